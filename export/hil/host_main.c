/*
 * host_main.c - the HIL board as a POSIX program: the generated policy serving the link on this computer,
 * to try the whole path without hardware and to test the protocol against the host-compiled policy.
 *
 *   nsw_hil_host            serves on stdin/stdout (give it one end of a pseudo-terminal, a pipe, socat)
 *   nsw_hil_host /dev/ttyX  opens that terminal, puts it in raw mode and serves on it (the baud rate is
 *                           left as it is: a pseudo-terminal has none, a real port is set with stty)
 * It exits when the link closes: end of input, or the last user of the pseudo-terminal's other end left.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "nsw_hil.h"

static int in_fd = STDIN_FILENO;
static int out_fd = STDOUT_FILENO;
static uint8_t in_buffer[256]; /* read() in chunks: one system call per byte would dominate a round trip */
static ssize_t in_length, in_next;

int hil_read_byte(void)
{
  while (in_next == in_length) {
    in_length = read(in_fd, in_buffer, sizeof in_buffer);
    in_next = 0;
    if (in_length < 0 && errno == EINTR) {
      in_length = 0;
    } else if (in_length <= 0) {
      return -1; /* end of input, or EIO once a pseudo-terminal's other end is closed */
    }
  }
  return in_buffer[in_next++];
}

void hil_write(const uint8_t *data, size_t length)
{
  while (length > 0) {
    ssize_t done = write(out_fd, data, length);
    if (done < 0) {
      if (errno == EINTR) {
        continue;
      }
      return; /* the reader is gone; hil_read_byte sees the same and ends the loop */
    }
    data += done;
    length -= (size_t)done;
  }
}

uint32_t hil_micros(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint32_t)((uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u);
}

static int open_raw(const char *path)
{
  int fd = open(path, O_RDWR | O_NOCTTY);
  if (fd < 0) {
    fprintf(stderr, "nsw_hil_host: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  struct termios tio;
  if (tcgetattr(fd, &tio) == 0) { /* raw 8N1: no echo, no line editing, no CR/LF translation */
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB);
    tio.c_cflag |= CS8 | CREAD | CLOCAL;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    tcsetattr(fd, TCSANOW, &tio);
  }
  return fd;
}

int main(int argc, char **argv)
{
  if (argc > 2) {
    fprintf(stderr, "usage: %s [TTY]  (without TTY: serve on stdin/stdout)\n", argv[0]);
    return 2;
  }
  if (argc == 2) {
    in_fd = out_fd = open_raw(argv[1]);
    if (in_fd < 0) {
      return 1;
    }
  }
  nsw_hil_reset();
  nsw_hil_serve();
  return 0;
}
