/* startup.c: vector table and reset handler for the Cortex-M C firmware (no vendor
 * startup files: the stock semihosting crt0 has no vector table). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;
extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&__stack_top, /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
};

void Reset_Handler(void) {
    /* Enable the FPU (CP10, CP11 full access) before any floating-point instruction. */
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;
    __asm volatile("dsb\n isb");
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
    __libc_init_array();
    exit(main());
}

/* Any fault (including a trapped Rust panic) ends the QEMU run with status 3 instead of
 * hanging it. */
void Fault_Handler(void) {
    exit(3);
}

/* newlib calls these from __libc_init_array; nothing to do here. */
void _init(void) {}
void _fini(void) {}
