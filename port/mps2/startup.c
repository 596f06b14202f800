/*
 * Minimal board support for Arm's MPS2 AN386 (Cortex-M4) as QEMU emulates
 * it: vector table, reset (copy .data, clear .bss), semihosting stdio
 * (newlib's librdimon) and a heap below the stack. Enough to run the
 * device core's tests; firmware brings its own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern uint32_t __stack_top, __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern char end, __HeapLimit;
extern void initialise_monitor_handles(void);
extern int main(void);

void reset_handler(void);
void *_sbrk(int incr);
void _init(void);
void _fini(void);

#define STACK_PAINT 0xa5a5a5a5u

/* The lowest stack address a program's stack meter (stackmeter.c) saw used
 * before painting over it again; the top of the stack when there is none. */
uintptr_t otk_stack_lowest = UINTPTR_MAX;

/* Stack high-water mark: the stack is painted at reset and scanned at exit. */
static void report_stack(void)
{
    uint32_t *p = (uint32_t *)(void *)&__HeapLimit;
    while (p < &__stack_top && *p == STACK_PAINT)
        p++;
    if (otk_stack_lowest < (uintptr_t)p)
        p = (uint32_t *)otk_stack_lowest;
    printf("stack high-water mark: %lu bytes (test program, crypto included)\n",
           (unsigned long)((uintptr_t)&__stack_top - (uintptr_t)p));
}

void reset_handler(void)
{
    uint32_t *src = &__etext, *dst = &__data_start__;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0) - 64; /* leave this frame alone */
    while (dst < &__data_end__)
        *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0;
    for (dst = (uint32_t *)(void *)&__HeapLimit; (uintptr_t)dst < sp;)
        *dst++ = STACK_PAINT;
    initialise_monitor_handles();
    atexit(report_stack);
    exit(main()); /* semihosting: the exit code reaches the host */
}

static void fault(void)
{
    for (;;)
        ;
}

__attribute__((section(".isr_vector"), used)) void (*const otk_vectors[16])(void) = {
    (void (*)(void))&__stack_top, reset_handler, fault, fault, fault, fault, fault, 0, 0, 0, 0,
    fault, fault, 0, fault, fault};

/* The heap grows from the end of .bss up to __HeapLimit (the stack is above). */
void *_sbrk(int incr)
{
    static char *brk = &end;
    char *p = brk;
    if (incr < 0 || brk + incr > &__HeapLimit)
        return (void *)-1;
    brk += incr;
    return p;
}

void _init(void)
{
}

void _fini(void)
{
}
