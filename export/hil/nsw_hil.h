/*
 * nsw_hil.h - the board side of nanoswarm's serial hardware-in-the-loop link: a host sends observations,
 * the board runs the generated policy (policy.h / policy.c) on them and sends the actions back.
 *
 * Wire format (nanoswarm.firmware_bridge.hil_protocol is the Python mirror; both are little-endian byte by
 * byte, so they read the same on a Cortex-M4, on a host and in Python):
 *   frame   = 0x00, COBS(header + payload + crc), 0x00
 *   header  = [0] protocol version  [1] message type  [2..3] sequence number  [4..5] payload length
 *   crc     = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of header + payload, 2 bytes
 * COBS leaves no 0x00 inside a frame, so 0x00 always ends one: after line noise, a lost byte or a reset, the
 * next delimiter puts both sides back in step. Senders start every frame with an extra 0x00 as well, which
 * ends whatever partial frame the other side holds; receivers ignore such empty frames.
 *
 * Messages (requests from the host, each answered with the same sequence number):
 *   HELLO  0x01  any payload        -> INFO 0x81: n_in u16, n_out u16, neighbours u16 (0xFFFF: no layout in
 *                                      policy.h), max payload u16, policy id u32, frames ok u32, frames bad u32
 *   INFER  0x02  n_in float32       -> ACTION 0x82: n_out float32, inference time u32 (us; 0 without a clock)
 *   any bad frame                   -> ERROR 0xFF: code u8, detail u16 (NSW_HIL_ERROR_*); its sequence number
 *                                      is the bad frame's, or NSW_HIL_SEQ_UNKNOWN where none could be read
 * The policy id is the CRC-32 of policy.c and policy.h (nsw_hil_policy_id.h, written with them), so a host
 * can tell which export a board runs.
 *
 * Porting: the platform supplies three functions (host_main.c for a POSIX tty or stdin/stdout,
 * stm32_uart_main.c for an STM32F405 USART) and calls nsw_hil_serve(), or nsw_hil_feed() per received byte
 * from its own loop. Memory is static and bounded by the policy's sizes: no malloc, no stdio.
 */
#ifndef NSW_HIL_H
#define NSW_HIL_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define NSW_HIL_PROTOCOL_VERSION 1u
#define NSW_HIL_HEADER_SIZE 6u
#define NSW_HIL_CRC_SIZE 2u
#define NSW_HIL_SEQ_UNKNOWN 0xFFFFu
#define NSW_HIL_NO_LAYOUT 0xFFFFu

enum {
  NSW_HIL_HELLO = 0x01,
  NSW_HIL_INFER = 0x02,
  NSW_HIL_INFO = 0x81,
  NSW_HIL_ACTION = 0x82,
  NSW_HIL_ERROR = 0xFF,
};

enum {
  NSW_HIL_ERROR_BAD_CRC = 1,       /* detail: 0 */
  NSW_HIL_ERROR_BAD_FRAME = 2,     /* not COBS, or shorter than header + crc; detail: decoded bytes */
  NSW_HIL_ERROR_TOO_LONG = 3,      /* longer than this board's buffer; detail: NSW_HIL_MAX_PAYLOAD */
  NSW_HIL_ERROR_BAD_VERSION = 4,   /* detail: the protocol version this board speaks */
  NSW_HIL_ERROR_UNKNOWN_TYPE = 5,  /* detail: the message type received */
  NSW_HIL_ERROR_BAD_LENGTH = 6,    /* length field or payload size wrong; detail: the size expected */
};

#define NSW_HIL_INFO_SIZE 20u
#define NSW_HIL_ERROR_SIZE 3u
#define NSW_HIL_INFER_SIZE (4u * NANOSWARM_POLICY_N_IN)
#define NSW_HIL_ACTION_SIZE (4u * NANOSWARM_POLICY_N_OUT + 4u)

#define NSW_HIL_MAX2(a, b) ((a) > (b) ? (a) : (b))
/* The largest payload this board receives or sends. */
#define NSW_HIL_MAX_PAYLOAD                                              \
  NSW_HIL_MAX2(NSW_HIL_MAX2(NSW_HIL_INFER_SIZE, NSW_HIL_ACTION_SIZE),    \
               NSW_HIL_MAX2(NSW_HIL_INFO_SIZE, NSW_HIL_ERROR_SIZE))
#define NSW_HIL_MAX_FRAME (NSW_HIL_HEADER_SIZE + NSW_HIL_MAX_PAYLOAD + NSW_HIL_CRC_SIZE)
/* COBS adds one byte per 254 and one at the start; plus the two delimiters. */
#define NSW_HIL_MAX_WIRE (NSW_HIL_MAX_FRAME + NSW_HIL_MAX_FRAME / 254u + 3u)

#if NSW_HIL_MAX_PAYLOAD > 0xFFFFu
#error "the policy's observation does not fit a HIL frame (payload length is 16 bits)"
#endif

/* ---- supplied by the platform ---- */

/** The next byte received, waiting for one if need be; negative once the link is closed for good. */
int hil_read_byte(void);

/** Sends `length` bytes, returning when they are all queued or sent. */
void hil_write(const uint8_t *data, size_t length);

/** A free-running microsecond counter that wraps modulo 2^32 (only differences over one inference are
 *  used); a board without a clock returns 0, and ACTION then reports 0 us. */
uint32_t hil_micros(void);

/* ---- provided here ---- */

/** Forgets any partially received frame and zeroes the frame counters (start-up state). */
void nsw_hil_reset(void);

/** Takes one received byte; when it completes a frame, the answer is sent through hil_write. */
void nsw_hil_feed(uint8_t byte);

/** Feeds every byte hil_read_byte returns until it reports the link closed. */
void nsw_hil_serve(void);

#endif /* NSW_HIL_H */
