/* Runs every embedded sample observation through nanoswarm_policy and reports, via semihosting:
 *   "sample <i> <instructions> <output bits as 8 hex digits>..." per sample,
 *   "stack <bytes>" (deepest stack use of one inference), then "done".
 *
 * Instruction count: QEMU models TIM2 with a 1 GHz input clock, and under `-icount shift=0` every guest
 * instruction advances virtual time by exactly 1 ns, so TIM2_CNT (prescaler 0) counts retired
 * instructions. A call is timed through one non-inlined wrapper, once with a naked function holding only
 * `bx lr` (exactly 1 instruction) and once per sample with the policy; the difference plus that one
 * instruction is what the policy itself executed, first instruction to return inclusive.
 *
 * Stack: all free RAM between .bss and the stack pointer is painted with a pattern first. The lowest
 * overwritten word after the empty call marks the wrapper's own depth; after the policy calls it marks
 * the wrapper plus the deepest inference, and the difference is the policy's stack use. Nothing may
 * allocate from the heap before the scan, so semihosting stdio starts only after it.
 *
 * samples.h (written by nanoswarm.export.mcu) defines HARNESS_SAMPLES and harness_samples.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "samples.h"

#define TIM2_CNT (*(volatile uint32_t *)0x40000024u)
#define STACK_PATTERN 0xA5C3E10Fu

typedef void (*policy_fn)(const float *input, float *output);

extern uint32_t _ebss;
extern void initialise_monitor_handles(void);

static float outputs[HARNESS_SAMPLES][NANOSWARM_POLICY_N_OUT];
static uint32_t instructions[HARNESS_SAMPLES];

static void __attribute__((naked, noipa)) empty_policy(const float *input __attribute__((unused)),
                                                        float *output __attribute__((unused)))
{
    __asm volatile("bx lr");
}

static uint32_t __attribute__((noipa)) timed_call(policy_fn policy, const float *input, float *output)
{
    uint32_t start = TIM2_CNT;
    policy(input, output);
    return TIM2_CNT - start;
}

static uint32_t *stack_pointer(void)
{
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Lowest painted word that was overwritten; &_ebss itself if the stack reached the end of .bss. */
static const volatile uint32_t *lowest_touched(const uint32_t *top)
{
    const volatile uint32_t *word = &_ebss;
    while (word < top && *word == STACK_PATTERN) {
        ++word;
    }
    return word;
}

int main(void)
{
    uint32_t *top = stack_pointer(); /* everything below it is free until the first call */
    for (volatile uint32_t *word = &_ebss; word < top; ++word) {
        *word = STACK_PATTERN;
    }

    uint32_t empty_instructions = timed_call(empty_policy, harness_samples.values[0], outputs[0]);
    const volatile uint32_t *wrapper_depth = lowest_touched(top);
    for (uint32_t i = 0; i < HARNESS_SAMPLES; ++i) {
        instructions[i] = timed_call(nanoswarm_policy, harness_samples.values[i], outputs[i])
                          - empty_instructions + 1u;
    }
    const volatile uint32_t *policy_depth = lowest_touched(top);
    int overflow = policy_depth == &_ebss;

    initialise_monitor_handles();
    for (uint32_t i = 0; i < HARNESS_SAMPLES; ++i) {
        printf("sample %" PRIu32 " %" PRIu32, i, instructions[i]);
        for (uint32_t j = 0; j < NANOSWARM_POLICY_N_OUT; ++j) {
            uint32_t bits;
            memcpy(&bits, &outputs[i][j], sizeof bits);
            printf(" %08" PRIx32, bits);
        }
        printf("\n");
    }
    if (overflow) {
        printf("stack overflow\n");
        return 1;
    }
    printf("stack %" PRIu32 "\ndone\n", (uint32_t)((wrapper_depth - policy_depth) * sizeof(uint32_t)));
    return 0;
}
