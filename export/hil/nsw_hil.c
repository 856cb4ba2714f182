/*
 * nsw_hil.c - frame decoder, encoder and dispatch of the HIL link (wire format in nsw_hil.h).
 *
 * The decoder undoes COBS one byte at a time into a buffer sized for the largest frame this policy can
 * need; anything longer is counted and dropped up to the next delimiter, so no input can write past it
 * or stall the decoder. Every multi-byte field is assembled byte by byte: the frame buffer has no
 * alignment, and the wire is little-endian whatever the board is.
 */
#include "nsw_hil.h"

#include <string.h>

#include "nsw_hil_policy_id.h"

#ifdef NANOSWARM_OBS_NUM_NEIGHBORS
#define NSW_HIL_NEIGHBORS NANOSWARM_OBS_NUM_NEIGHBORS
#else
#define NSW_HIL_NEIGHBORS NSW_HIL_NO_LAYOUT
#endif

static struct {
  uint8_t frame[NSW_HIL_MAX_FRAME]; /* decoded bytes of the frame being received */
  size_t length;                    /* decoded bytes so far */
  uint8_t block_left;               /* bytes left in the current COBS block; 0: next byte is a code */
  uint8_t zero_owed;                /* the current block ends in a zero (its code was below 0xFF) */
  uint8_t started;                  /* a code byte was seen: the frame is not empty */
  uint8_t overflow;                 /* the frame outgrew `frame`: drop it at the delimiter */
  uint32_t frames_ok;
  uint32_t frames_bad;
} rx;

static uint8_t tx_frame[NSW_HIL_MAX_FRAME];
static uint8_t tx_wire[NSW_HIL_MAX_WIRE];
static float observation[NANOSWARM_POLICY_N_IN];
static float action[NANOSWARM_POLICY_N_OUT];

/* CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR. */
static uint16_t crc16(const uint8_t *data, size_t length)
{
  uint16_t crc = 0xFFFFu;
  for (size_t i = 0; i < length; i++) {
    crc ^= (uint16_t)(data[i] << 8);
    for (int bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

static void put_u16(uint8_t *p, uint32_t value)
{
  p[0] = (uint8_t)value;
  p[1] = (uint8_t)(value >> 8);
}

static void put_u32(uint8_t *p, uint32_t value)
{
  put_u16(p, value);
  put_u16(p + 2, value >> 16);
}

static uint16_t get_u16(const uint8_t *p)
{
  return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
  return (uint32_t)get_u16(p) | ((uint32_t)get_u16(p + 2) << 16);
}

static void put_float(uint8_t *p, float value)
{
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  put_u32(p, bits);
}

static float get_float(const uint8_t *p)
{
  uint32_t bits = get_u32(p);
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

/* Sends tx_frame's header + `payload_length` payload bytes, with the CRC, COBS-encoded between delimiters. */
static void send(uint8_t type, uint16_t seq, size_t payload_length)
{
  size_t body = NSW_HIL_HEADER_SIZE + payload_length;
  tx_frame[0] = NSW_HIL_PROTOCOL_VERSION;
  tx_frame[1] = type;
  put_u16(tx_frame + 2, seq);
  put_u16(tx_frame + 4, (uint32_t)payload_length);
  put_u16(tx_frame + body, crc16(tx_frame, body));
  body += NSW_HIL_CRC_SIZE;

  size_t out = 0;
  tx_wire[out++] = 0x00u;
  size_t code_at = out++;
  uint8_t code = 1u;
  for (size_t i = 0; i < body; i++) {
    if (tx_frame[i] != 0x00u) {
      tx_wire[out++] = tx_frame[i];
      code++;
    }
    if (tx_frame[i] == 0x00u || code == 0xFFu) {
      tx_wire[code_at] = code;
      code_at = out++;
      code = 1u;
    }
  }
  tx_wire[code_at] = code;
  tx_wire[out++] = 0x00u;
  hil_write(tx_wire, out);
}

static void send_error(uint16_t seq, uint8_t code, uint32_t detail)
{
  rx.frames_bad++;
  uint8_t *payload = tx_frame + NSW_HIL_HEADER_SIZE;
  payload[0] = code;
  put_u16(payload + 1, detail);
  send(NSW_HIL_ERROR, seq, NSW_HIL_ERROR_SIZE);
}

static void send_info(uint16_t seq)
{
  uint8_t *payload = tx_frame + NSW_HIL_HEADER_SIZE;
  put_u16(payload, NANOSWARM_POLICY_N_IN);
  put_u16(payload + 2, NANOSWARM_POLICY_N_OUT);
  put_u16(payload + 4, NSW_HIL_NEIGHBORS);
  put_u16(payload + 6, NSW_HIL_MAX_PAYLOAD);
  put_u32(payload + 8, NSW_HIL_POLICY_ID);
  put_u32(payload + 12, rx.frames_ok);
  put_u32(payload + 16, rx.frames_bad);
  send(NSW_HIL_INFO, seq, NSW_HIL_INFO_SIZE);
}

static void send_action(uint16_t seq, const uint8_t *payload_in)
{
  for (unsigned i = 0; i < NANOSWARM_POLICY_N_IN; i++) {
    observation[i] = get_float(payload_in + 4u * i);
  }
  uint32_t start = hil_micros();
  nanoswarm_policy(observation, action);
  uint32_t elapsed = hil_micros() - start;
  uint8_t *payload = tx_frame + NSW_HIL_HEADER_SIZE;
  for (unsigned i = 0; i < NANOSWARM_POLICY_N_OUT; i++) {
    put_float(payload + 4u * i, action[i]);
  }
  put_u32(payload + 4u * NANOSWARM_POLICY_N_OUT, elapsed);
  send(NSW_HIL_ACTION, seq, NSW_HIL_ACTION_SIZE);
}

/* Checks a complete decoded frame and answers it. */
static void dispatch(const uint8_t *frame, size_t length)
{
  if (length < NSW_HIL_HEADER_SIZE + NSW_HIL_CRC_SIZE) {
    send_error(NSW_HIL_SEQ_UNKNOWN, NSW_HIL_ERROR_BAD_FRAME, (uint32_t)length);
    return;
  }
  size_t body = length - NSW_HIL_CRC_SIZE;
  uint16_t seq = get_u16(frame + 2);
  if (get_u16(frame + body) != crc16(frame, body)) {
    send_error(seq, NSW_HIL_ERROR_BAD_CRC, 0u);
    return;
  }
  if (frame[0] != NSW_HIL_PROTOCOL_VERSION) {
    send_error(seq, NSW_HIL_ERROR_BAD_VERSION, NSW_HIL_PROTOCOL_VERSION);
    return;
  }
  size_t payload_length = body - NSW_HIL_HEADER_SIZE;
  if (get_u16(frame + 4) != payload_length) {
    send_error(seq, NSW_HIL_ERROR_BAD_LENGTH, (uint32_t)payload_length);
    return;
  }
  switch (frame[1]) {
  case NSW_HIL_HELLO:
    rx.frames_ok++;
    send_info(seq);
    break;
  case NSW_HIL_INFER:
    if (payload_length != NSW_HIL_INFER_SIZE) {
      send_error(seq, NSW_HIL_ERROR_BAD_LENGTH, NSW_HIL_INFER_SIZE);
      return;
    }
    rx.frames_ok++;
    send_action(seq, frame + NSW_HIL_HEADER_SIZE);
    break;
  default:
    send_error(seq, NSW_HIL_ERROR_UNKNOWN_TYPE, frame[1]);
    break;
  }
}

static void start_frame(void)
{
  rx.length = 0;
  rx.block_left = 0;
  rx.zero_owed = 0;
  rx.started = 0;
  rx.overflow = 0;
}

static void append(uint8_t byte)
{
  if (rx.length < sizeof rx.frame) {
    rx.frame[rx.length++] = byte;
  } else {
    rx.overflow = 1;
  }
}

void nsw_hil_reset(void)
{
  start_frame();
  rx.frames_ok = 0;
  rx.frames_bad = 0;
}

void nsw_hil_feed(uint8_t byte)
{
  if (byte == 0x00u) {
    if (rx.overflow) {
      send_error(NSW_HIL_SEQ_UNKNOWN, NSW_HIL_ERROR_TOO_LONG, NSW_HIL_MAX_PAYLOAD);
    } else if (rx.block_left != 0) { /* the delimiter came inside a block: a truncated frame */
      send_error(NSW_HIL_SEQ_UNKNOWN, NSW_HIL_ERROR_BAD_FRAME, (uint32_t)rx.length);
    } else if (rx.started) {
      dispatch(rx.frame, rx.length); /* the zero owed by the last block is the frame's end, not data */
    }
    start_frame();
    return;
  }
  if (rx.block_left == 0) { /* a code byte: emit the previous block's zero, then expect code - 1 bytes */
    if (rx.zero_owed) {
      append(0x00u);
    }
    rx.started = 1;
    rx.block_left = (uint8_t)(byte - 1u);
    rx.zero_owed = byte != 0xFFu;
  } else {
    append(byte);
    rx.block_left--;
  }
}

void nsw_hil_serve(void)
{
  for (int byte = hil_read_byte(); byte >= 0; byte = hil_read_byte()) {
    nsw_hil_feed((uint8_t)byte);
  }
}
