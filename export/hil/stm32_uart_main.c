/*
 * stm32_uart_main.c - the HIL board on an STM32F405 (the Crazyflie 2.x MCU): polls a USART for bytes, feeds
 * them to nsw_hil and answers on the same USART. No interrupts, no DMA, no vendor library: a few registers
 * (RM0090 reference manual), so it ports to any start-up code.
 *
 * Choose the port with NSW_HIL_UART:
 *   1 (default)  USART1, TX PA9 / RX PA10 (AF7), on APB2. QEMU's netduinoplus2 connects it to serial0.
 *   2            USART2, TX PA2 / RX PA3 (AF7), on APB1: the Crazyflie 2.x expansion header's TX2 / RX2.
 * NSW_HIL_BAUD (default 115200) must match the host's HilLink baudrate. NSW_HIL_PCLK_HZ is the USART's bus
 * clock and NSW_HIL_CPU_HZ the core clock; both default to 16 MHz, the HSI oscillator the chip runs on out
 * of reset, because this file sets up no PLL. A start-up that runs the core at 168 MHz (APB2 84 MHz, APB1
 * 42 MHz) must pass those instead, or the baud rate is wrong and the host sees only garbage.
 *
 * Build (the Makefile's `stm32` target): arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard
 * -mfpu=fpv4-sp-d16 with any start-up that enables the FPU before main (startup.c and m4.ld here, from
 * export/mcu, do; they link at 0x08000000 for a bare board or QEMU). Run on QEMU:
 *   qemu-system-arm -M netduinoplus2 -display none -monitor none -serial pty \
 *       -semihosting-config enable=on,target=native -kernel nsw_hil_stm32.elf
 * and point HilLink at the /dev/pts/N it prints.
 *
 * Inference time comes from the DWT cycle counter (QEMU does not model it: reads 0, so ACTION reports 0 us).
 */
#include <stdint.h>

#include "nsw_hil.h"

#ifndef NSW_HIL_UART
#define NSW_HIL_UART 1
#endif
#ifndef NSW_HIL_BAUD
#define NSW_HIL_BAUD 115200u
#endif
#ifndef NSW_HIL_PCLK_HZ
#define NSW_HIL_PCLK_HZ 16000000u
#endif
#ifndef NSW_HIL_CPU_HZ
#define NSW_HIL_CPU_HZ 16000000u
#endif

#define REG(address) (*(volatile uint32_t *)(address))

#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
#define RCC_APB2ENR REG(0x40023844u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)

#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_PUPDR REG(0x4002000Cu)
#define GPIOA_AFR(pin) REG(0x40020020u + 4u * ((pin) / 8u))
#define GPIO_AF7_USART 7u

#if NSW_HIL_UART == 1
#define USART_BASE 0x40011000u
#define USART_ENABLE() (RCC_APB2ENR |= 1u << 4)
#define TX_PIN 9u
#define RX_PIN 10u
#elif NSW_HIL_UART == 2
#define USART_BASE 0x40004400u
#define USART_ENABLE() (RCC_APB1ENR |= 1u << 17)
#define TX_PIN 2u
#define RX_PIN 3u
#else
#error "NSW_HIL_UART must be 1 (USART1, PA9/PA10) or 2 (USART2, PA2/PA3)"
#endif

#define USART_SR REG(USART_BASE + 0x00u)
#define USART_DR REG(USART_BASE + 0x04u)
#define USART_BRR REG(USART_BASE + 0x08u)
#define USART_CR1 REG(USART_BASE + 0x0Cu)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)

#define DEMCR REG(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define CYCLES_PER_US (NSW_HIL_CPU_HZ / 1000000u)

static void pin_alternate(uint32_t pin)
{
  GPIOA_MODER = (GPIOA_MODER & ~(3u << (2u * pin))) | (2u << (2u * pin));
  GPIOA_AFR(pin) = (GPIOA_AFR(pin) & ~(0xFu << (4u * (pin % 8u)))) | (GPIO_AF7_USART << (4u * (pin % 8u)));
}

static void uart_init(void)
{
  RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
  USART_ENABLE();
  pin_alternate(TX_PIN);
  pin_alternate(RX_PIN);
  GPIOA_PUPDR = (GPIOA_PUPDR & ~(3u << (2u * RX_PIN))) | (1u << (2u * RX_PIN)); /* idle high if unplugged */
  USART_BRR = (NSW_HIL_PCLK_HZ + NSW_HIL_BAUD / 2u) / NSW_HIL_BAUD;               /* 16x oversampling, 8N1 */
  USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

int hil_read_byte(void)
{
  while (!(USART_SR & USART_SR_RXNE)) {
  }
  return (int)(USART_DR & 0xFFu); /* reading SR then DR also clears an overrun: the CRC catches lost bytes */
}

void hil_write(const uint8_t *data, size_t length)
{
  for (size_t i = 0; i < length; i++) {
    while (!(USART_SR & USART_SR_TXE)) {
    }
    USART_DR = data[i];
  }
}

/* Microseconds from the 32-bit cycle counter, carried in software so the result wraps at 2^32 us as
 * nsw_hil.h asks. Exact as long as calls come less than 2^32 cycles apart (25 s at 168 MHz), which holds
 * for the two calls around an inference; a longer idle gap only loses absolute time. */
uint32_t hil_micros(void)
{
  static uint32_t last_cycles, spare_cycles, micros;
  uint32_t now = DWT_CYCCNT;
  spare_cycles += now - last_cycles;
  last_cycles = now;
  micros += spare_cycles / CYCLES_PER_US;
  spare_cycles %= CYCLES_PER_US;
  return micros;
}

int main(void)
{
  DEMCR |= DEMCR_TRCENA;
  DWT_CYCCNT = 0u;
  DWT_CTRL |= DWT_CTRL_CYCCNTENA;
  uart_init();
  nsw_hil_reset();
  nsw_hil_serve();
  return 0;
}
