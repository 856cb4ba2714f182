/* Start-up for the policy harness on QEMU's netduinoplus2 (STM32F405, Cortex-M4F).
 *
 * The reset handler turns the FPU on before any float instruction can run (otherwise the first one
 * raises a NOCP UsageFault), initialises .data and .bss, runs main() and leaves QEMU through the
 * semihosting SYS_EXIT call, so the exit status reaches the host. Every fault vector reports the fault
 * (exception number, CFSR, faulting PC) through semihosting and exits with a failure status, so a
 * broken policy ends the run at once with a message instead of hanging until the host's timeout.
 * Reset_Handler stays integer-only and uses word pointers: nothing here may touch the FPU before CPACR
 * allows it, and nothing may read .data before it is copied.
 */
#include <stdint.h>

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);

#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define CFSR (*(volatile uint32_t *)0xE000ED28u)
#define CPACR_CP10_CP11_FULL (0xFu << 20)

#define SYS_WRITE0 0x04u
#define SYS_EXIT 0x18u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023u

static uint32_t semihosting_call(uint32_t operation, const void *argument)
{
    register uint32_t r0 __asm("r0") = operation;
    register const void *r1 __asm("r1") = argument;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void __attribute__((noreturn)) semihosting_exit(uint32_t reason)
{
    semihosting_call(SYS_EXIT, (const void *)reason);
    for (;;) {
    }
}

static char *put_hex(char *p, uint32_t value)
{
    for (int shift = 28; shift >= 0; shift -= 4) {
        *p++ = "0123456789abcdef"[(value >> shift) & 0xFu];
    }
    return p;
}

static char *put_text(char *p, const char *text)
{
    while (*text) {
        *p++ = *text++;
    }
    return p;
}

/* Called from fault_entry with the exception stack frame; frame[6] is the faulting PC. */
void __attribute__((used, noreturn)) fault_report(const uint32_t *frame)
{
    static char message[80];
    uint32_t exception;
    __asm volatile("mrs %0, ipsr" : "=r"(exception));
    char *p = put_text(message, "\nFAULT exception=");
    p = put_hex(p, exception & 0x1FFu);
    p = put_text(p, " cfsr=");
    p = put_hex(p, CFSR);
    p = put_text(p, " pc=");
    p = put_hex(p, frame[6]);
    p = put_text(p, "\n");
    *p = '\0';
    semihosting_call(SYS_WRITE0, message);
    semihosting_exit(ADP_STOPPED_RUNTIME_ERROR_UNKNOWN);
}

/* Finds the stack the exception frame was pushed on (MSP or PSP) and hands it to fault_report. */
static void __attribute__((naked)) fault_entry(void)
{
    __asm volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "b fault_report\n");
}

void __attribute__((noreturn)) Reset_Handler(void)
{
    CPACR |= CPACR_CP10_CP11_FULL;
    __asm volatile("dsb\n isb" ::: "memory");
    const uint32_t *source = &_sidata;
    for (uint32_t *word = &_sdata; word < &_edata;) {
        *word++ = *source++;
    }
    for (uint32_t *word = &_sbss; word < &_ebss;) {
        *word++ = 0u;
    }
    int status = main();
    semihosting_exit(status == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR_UNKNOWN);
}

/* The 16 system exceptions: initial SP, reset, then NMI, HardFault, MemManage, BusFault, UsageFault;
 * the rest (SVCall, PendSV, SysTick, reserved) are never enabled by the harness. */
__attribute__((section(".isr_vector"), used)) static const void *const vector_table[16] = {
    &_estack, (const void *)Reset_Handler,
    (const void *)fault_entry, (const void *)fault_entry, (const void *)fault_entry,
    (const void *)fault_entry, (const void *)fault_entry,
};
