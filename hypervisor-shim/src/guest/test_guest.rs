//! The built-in test guest: a few KiB of 64-bit x86 code in the spirit of
//! kvm-unit-tests, assembled into the binary with `global_asm!`.
//!
//! The VMM enters it in long mode, kernel mode, on every vCPU at once, with `rdi` = the vCPU
//! index and `rsp` = the top of that vCPU's stack (there is no INIT/SIPI bring-up: application
//! processors start where the bootstrap processor does and wait for its IDT). It then:
//! - prints a banner with its vCPU count and memory size on COM1;
//! - switches each local APIC to x2APIC mode and runs its timer at 100 Hz; every tick adds
//!   one to that vCPU's heartbeat counter at [`layout::HEARTBEAT`];
//! - prints `N vCPUs online` once every vCPU has started its timer;
//! - takes one-byte commands on COM1 (interrupt driven, through the IOAPIC): `r` resets
//!   through the i8042, `c` crashes with a triple fault, `s` spins with interrupts disabled,
//!   `p` powers off, `f` writes a pattern over all memory above 4 MiB (to give snapshots
//!   something to save), `e` runs `popcnt` with interrupts disabled (which a software KVM
//!   cannot emulate: the VMM must report the crash with the instruction's bytes);
//! - `d` tests the first virtio-blk device (virtio-mmio at [`layout::VIRTIO_MMIO`]): it sets
//!   the device up, prints its size and ID, reads the first 4 KiB and prints their first 8
//!   bytes, writes [`disk_pattern`] there, reads it back and compares, and flushes, printing
//!   each request's status; `b` measures the disk (see [`disk_bench`]);
//! - `n` tests the first virtio-net device: it sends one broadcast frame of EtherType
//!   [`NET_ETHERTYPE`] carrying `cimvirt test guest frame`, then waits (about ten seconds of
//!   TSC time) for a frame of that EtherType and prints its text, skipping any other frames;
//! - `t` prints [`TEXT_LINES`] lines of text (console throughput); any byte that is not a
//!   command is echoed back (a keystroke's round trip);
//! - powers off when the i8042 delivers Ctrl-Alt-Del (the graceful shutdown request), by
//!   writing S5 to the sleep control register.
//!
//! Interrupt handlers use trap gates so that they run with interrupts enabled: on a software
//! KVM (`kvm_pvm`) code with interrupts disabled goes through the instruction emulator.

use std::arch::global_asm;

/// Guest-physical addresses the test guest and the VMM agree on.
pub mod layout {
    /// Where the code is loaded and entered.
    pub const CODE: u64 = 0x10_0000;
    /// The boot information block the VMM writes: magic (u64), vCPU count (u32), vCPUs
    /// online (u32), memory bytes (u64), IDT-ready flag (u32).
    pub const INFO: u64 = 0x20_0000;
    /// One u64 heartbeat counter per vCPU, advanced 100 times a second.
    pub const HEARTBEAT: u64 = 0x20_1000;
    /// The interrupt descriptor table the guest builds.
    pub const IDT: u64 = 0x20_2000;
    /// vCPU i's stack is the 4 KiB page at `STACKS + i * 4096`.
    pub const STACKS: u64 = 0x30_0000;
    /// The lowest guest memory size the layout fits in.
    pub const MIN_MEMORY: u64 = 8 << 20;
    /// The most vCPUs the layout has counters and stacks for.
    pub const MAX_VCPUS: u32 = 254;
    /// "CIMVTGST": tells the guest the information block is there.
    pub const INFO_MAGIC: u64 = u64::from_le_bytes(*b"CIMVTGST");
    /// Offsets inside the information block.
    pub const INFO_VCPUS: u64 = 8;
    /// Offset of the vCPUs-online count.
    pub const INFO_ONLINE: u64 = 12;
    /// Offset of the memory size.
    pub const INFO_MEMORY: u64 = 16;
    /// Offset of the IDT-ready flag.
    pub const INFO_IDT_READY: u64 = 24;
    /// The virtio-mmio device the disk commands drive (the VM's first device).
    pub const VIRTIO_MMIO: u64 = crate::devices::virtio::layout::MMIO_BASE;
    /// The virtqueue: descriptor table, then driver ring, then device ring.
    pub const VQ_DESC: u64 = 0x20_3000;
    /// The driver (available) ring.
    pub const VQ_AVAIL: u64 = 0x20_3100;
    /// The device (used) ring.
    pub const VQ_USED: u64 = 0x20_3200;
    /// A request's header.
    pub const BLK_HEADER: u64 = 0x20_3400;
    /// A request's status byte.
    pub const BLK_STATUS: u64 = 0x20_3410;
    /// The device ID (20 bytes and a NUL).
    pub const BLK_ID: u64 = 0x20_3420;
    /// The 4 KiB the disk test writes from.
    pub const BLK_BUFFER: u64 = 0x20_4000;
    /// The 4 KiB the disk test reads back into.
    pub const BLK_READ_BACK: u64 = 0x20_5000;
    /// The 1 MiB buffer of the disk benchmark.
    pub const BENCH_BUFFER: u64 = 0x40_0000;
    /// The network device's receive queue (descriptors; driver ring at +0x100, device ring
    /// at +0x200).
    pub const NET_RX_QUEUE: u64 = 0x20_6000;
    /// Its transmit queue, laid out the same way.
    pub const NET_TX_QUEUE: u64 = 0x20_6400;
    /// The one receive buffer (2 KiB).
    pub const NET_RX_BUFFER: u64 = 0x20_7000;
    /// The frame the guest sends.
    pub const NET_TX_BUFFER: u64 = 0x20_7800;
}

/// The EtherType of the test guest's frames (IEEE 802 "local experimental").
pub const NET_ETHERTYPE: u16 = 0x88b5;

/// The disk benchmark (`b`): on the first virtio-blk device, at queue depth 1, it writes then
/// reads the whole disk sequentially in 1 MiB requests (up to the last whole MiB), then
/// writes then reads [`disk_bench::RANDOM_IOS`] random 4 KiB blocks, printing
/// `cimvirt test guest: bench: PHASE done` after each phase and the number of failed requests
/// at the end. The host times the phases by the lines' arrival.
pub mod disk_bench {
    /// 4 KiB requests per random phase.
    pub const RANDOM_IOS: u64 = 4096;
    /// The bytes of one sequential request.
    pub const SEQUENTIAL_BYTES: u64 = 1 << 20;
    /// The phases, in order, as the guest names them.
    pub const PHASES: [&str; 4] = ["seq-write", "seq-read", "rand-write", "rand-read"];
}

/// The 4 KiB the disk test (`d`) writes at the start of the disk: byte `i` is `i * 7 + 0x31`.
pub fn disk_pattern() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 + 0x31) as u8).collect()
}

/// The x2APIC timer's initial count: KVM's APIC bus runs at 1 GHz, so 10 ms per tick.
pub const TIMER_COUNT: u32 = 10_000_000;
/// Heartbeat ticks per second.
pub const HEARTBEAT_HZ: u64 = 100;

/// Serial commands the test guest understands.
pub mod command {
    /// Reset through the i8042 (command 0xFE).
    pub const RESET: u8 = b'r';
    /// Triple fault.
    pub const CRASH: u8 = b'c';
    /// Spin forever with interrupts disabled (stops answering; its heartbeat stops).
    pub const SPIN: u8 = b's';
    /// Power off through the sleep control register.
    pub const POWER_OFF: u8 = b'p';
    /// Write a pattern over all memory above 4 MiB (below the MMIO window).
    pub const FILL: u8 = b'f';
    /// Run `popcnt` with interrupts disabled: natively on hardware KVM, an emulation failure
    /// on `kvm_pvm`.
    pub const EMULATE: u8 = b'e';
    /// Test the first virtio-blk device.
    pub const DISK: u8 = b'd';
    /// Benchmark the first virtio-blk device.
    pub const DISK_BENCH: u8 = b'b';
    /// Send a frame on the first virtio-net device and wait for one.
    pub const NET: u8 = b'n';
    /// Print [`super::TEXT_LINES`] lines of [`super::TEXT_LINE_BYTES`] bytes, then
    /// `cimvirt test guest: text done` (console throughput).
    pub const TEXT: u8 = b't';
}

/// How many lines the text command prints.
pub const TEXT_LINES: u32 = 1024;
/// The length of each of those lines, its newline included.
pub const TEXT_LINE_BYTES: usize = 64;

global_asm!(
    r#"
    .pushsection .rodata.cimvirt_test_guest, "a"
    .code64
    .set INFO, {info}
    .set HEARTBEAT, {heartbeat}
    .set IDT, {idt}
    .set STACKS, {stacks}
    .set COM1, 0x3f8
    .set SLEEP_CONTROL, 0x600
    .set S5_SLEEP, 0x34
    .set VQ_DESC, {vq_desc}
    .set VQ_AVAIL, {vq_avail}
    .set VQ_USED, {vq_used}
    .set BLK_HEADER, {blk_header}
    .set BLK_STATUS, {blk_status}
    .set BLK_ID, {blk_id}
    .set BLK_BUFFER, {blk_buffer}
    .set BLK_READ_BACK, {blk_read_back}
    .set BENCH_BUFFER, {bench_buffer}
    .set NET_RX_QUEUE, {net_rx_queue}
    .set NET_TX_QUEUE, {net_tx_queue}
    .set NET_RX_BUFFER, {net_rx_buffer}
    .set NET_TX_BUFFER, {net_tx_buffer}
    .globl cimvirt_test_guest_start
    .globl cimvirt_test_guest_end
cimvirt_test_guest_start:
    out 0x80, al                        /* first-instruction marker for the VMM */
    test edi, edi
    jnz .Ltg_ap
    mov al, 0xff                        /* mask the legacy PIC: interrupts go through the IOAPIC */
    out 0x21, al
    out 0xa1, al
    sti                                 /* nothing interrupts yet: every LAPIC is still disabled */
    call .Ltg_build_idt
    lidt [rip + .Ltg_idtr]
    mov r8, 0xfec00000                  /* IOAPIC: pin 4 (COM1) -> 0x30, pin 1 (i8042) -> 0x31, on APIC 0 */
    mov dword ptr [r8], 0x18
    mov dword ptr [r8 + 0x10], 0x30
    mov dword ptr [r8], 0x19
    mov dword ptr [r8 + 0x10], 0
    mov dword ptr [r8], 0x12
    mov dword ptr [r8 + 0x10], 0x31
    mov dword ptr [r8], 0x13
    mov dword ptr [r8 + 0x10], 0
    mov dx, COM1 + 1                    /* COM1: interrupt on received data, OUT2 on */
    mov al, 1
    out dx, al
    mov dx, COM1 + 4
    mov al, 0x08
    out dx, al
    lea rsi, [rip + .Ltg_msg_banner]
    call .Ltg_puts
    mov eax, dword ptr [INFO + 8]
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_vcpus]
    call .Ltg_puts
    mov rax, qword ptr [INFO + 16]
    shr rax, 20
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_mib]
    call .Ltg_puts
    mov dword ptr [INFO + 24], 1        /* IDT ready: application processors may go on */
    jmp .Ltg_common
.Ltg_ap:
    sti
.Ltg_wait_idt:
    pause
    cmp dword ptr [INFO + 24], 1
    jne .Ltg_wait_idt
    lidt [rip + .Ltg_idtr]
.Ltg_common:
    mov ecx, 0x1b                       /* IA32_APIC_BASE: enable, x2APIC mode */
    rdmsr
    or eax, 0xc00
    wrmsr
    xor edx, edx
    mov ecx, 0x80f                      /* spurious vector 0xff, APIC software-enabled */
    mov eax, 0x1ff
    wrmsr
    mov ecx, 0x83e                      /* timer divide by 1 */
    mov eax, 0xb
    wrmsr
    mov ecx, 0x832                      /* timer: periodic, vector 0x20 */
    mov eax, 0x20020
    wrmsr
    mov ecx, 0x838                      /* timer initial count */
    mov eax, {timer_count}
    wrmsr
    lock inc dword ptr [INFO + 12]
    test edi, edi
    jnz .Ltg_idle
.Ltg_wait_online:
    pause
    mov eax, dword ptr [INFO + 12]
    cmp eax, dword ptr [INFO + 8]
    jb .Ltg_wait_online
    mov ebx, eax
    lea rsi, [rip + .Ltg_msg_banner]
    call .Ltg_puts
    mov eax, ebx
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_online]
    call .Ltg_puts
.Ltg_idle:
    hlt
    jmp .Ltg_idle

/* ecx = vector, rsi = handler, dl = gate type; clobbers rax, r9 */
.Ltg_set_gate:
    mov eax, ecx
    shl eax, 4
    add rax, IDT
    mov word ptr [rax], si
    mov word ptr [rax + 2], 0x08
    mov byte ptr [rax + 4], 0
    mov byte ptr [rax + 5], dl
    mov r9, rsi
    shr r9, 16
    mov word ptr [rax + 6], r9w
    shr r9, 16
    mov dword ptr [rax + 8], r9d
    mov dword ptr [rax + 12], 0
    ret

.Ltg_build_idt:
    lea rsi, [rip + .Ltg_unexpected]
    mov dl, 0x8e                        /* interrupt gate */
    xor ecx, ecx
.Ltg_idt_loop:
    call .Ltg_set_gate
    inc ecx
    cmp ecx, 256
    jb .Ltg_idt_loop
    mov dl, 0x8f                        /* trap gates: handlers run with interrupts enabled */
    mov ecx, 0x20
    lea rsi, [rip + .Ltg_timer]
    call .Ltg_set_gate
    mov ecx, 0x30
    lea rsi, [rip + .Ltg_serial]
    call .Ltg_set_gate
    mov ecx, 0x31
    lea rsi, [rip + .Ltg_keyboard]
    call .Ltg_set_gate
    mov ecx, 0xff
    lea rsi, [rip + .Ltg_spurious]
    call .Ltg_set_gate
    ret

/* rsi = NUL-terminated string; clobbers rax, rdx, rsi */
.Ltg_puts:
    mov dx, COM1
.Ltg_puts_loop:
    mov al, byte ptr [rsi]
    test al, al
    jz .Ltg_puts_done
    out dx, al
    inc rsi
    jmp .Ltg_puts_loop
.Ltg_puts_done:
    ret

/* rax = value, printed in decimal; clobbers rax, rcx, rdx, r8, r9 */
.Ltg_put_dec:
    mov r9, rsp
    sub rsp, 32
    mov r8, r9
    mov ecx, 10
.Ltg_dec_loop:
    xor edx, edx
    div rcx
    add dl, 0x30
    dec r8
    mov byte ptr [r8], dl
    test rax, rax
    jnz .Ltg_dec_loop
    mov dx, COM1
.Ltg_dec_out:
    mov al, byte ptr [r8]
    out dx, al
    inc r8
    cmp r8, r9
    jb .Ltg_dec_out
    add rsp, 32
    ret

.Ltg_eoi:
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
    ret

.Ltg_timer:
    push rax
    push rcx
    push rdx
    mov rax, rsp                        /* the stack says which vCPU this is */
    sub rax, STACKS
    shr rax, 12
    lock inc qword ptr [HEARTBEAT + rax * 8]
    call .Ltg_eoi
    pop rdx
    pop rcx
    pop rax
    iretq

.Ltg_serial:
    push rax
    push rcx
    push rdx
    push rsi
.Ltg_serial_next:
    /* Interrupts are off from reading the line status to echoing the byte: kvm_pvm has been
       seen to deliver COM1's interrupt again inside this handler, whose reads would then
       come between these two and take the byte (or a NUL) out of order. */
    cli
    mov dx, COM1 + 5
    in al, dx
    test al, 1
    jz .Ltg_serial_empty
    mov dx, COM1
    in al, dx
    cmp al, 0x61                        /* commands are lower-case letters */
    jb .Ltg_serial_echo
    cmp al, 0x7a
    ja .Ltg_serial_echo
    sti
    cmp al, 0x72                        /* r */
    je .Ltg_reset
    cmp al, 0x63                        /* c */
    je .Ltg_crash
    cmp al, 0x73                        /* s */
    je .Ltg_spin
    cmp al, 0x70                        /* p */
    je .Ltg_power_off
    cmp al, 0x66                        /* f */
    je .Ltg_fill
    cmp al, 0x65                        /* e */
    je .Ltg_emulate
    cmp al, 0x64                        /* d */
    je .Ltg_disk
    cmp al, 0x62                        /* b */
    je .Ltg_bench
    cmp al, 0x6e                        /* n */
    je .Ltg_net
    cmp al, 0x74                        /* t */
    je .Ltg_text
.Ltg_serial_echo:                       /* anything else is echoed back */
    mov dx, COM1
    out dx, al
    sti
    jmp .Ltg_serial_next
.Ltg_serial_empty:
    sti
    jmp .Ltg_irq_done

.Ltg_text:
    mov ecx, {text_lines}
.Ltg_text_line:
    lea rsi, [rip + .Ltg_msg_text]
    call .Ltg_puts
    dec ecx
    jnz .Ltg_text_line
    lea rsi, [rip + .Ltg_msg_text_done]
    call .Ltg_puts
    jmp .Ltg_serial_next

.Ltg_net:
    push rbx
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    mov r10d, {virtio_mmio}             /* the first virtio-net device among the windows */
    mov ecx, {virtio_devices}
.Ltg_net_probe:
    cmp dword ptr [r10], 0x74726976
    jne .Ltg_net_none
    cmp dword ptr [r10 + 8], 1          /* network device */
    je .Ltg_net_found
    add r10, 0x1000
    dec ecx
    jnz .Ltg_net_probe
.Ltg_net_none:
    lea rsi, [rip + .Ltg_msg_net_none]
    call .Ltg_puts
    jmp .Ltg_net_done
.Ltg_net_found:
    mov dword ptr [r10 + 0x70], 0       /* reset, ACKNOWLEDGE, DRIVER */
    mov dword ptr [r10 + 0x70], 1
    mov dword ptr [r10 + 0x70], 3
    mov dword ptr [r10 + 0x24], 0
    mov dword ptr [r10 + 0x20], 0x20    /* MAC */
    mov dword ptr [r10 + 0x24], 1
    mov dword ptr [r10 + 0x20], 1       /* VERSION_1 */
    mov dword ptr [r10 + 0x70], 0xb
    test dword ptr [r10 + 0x70], 8
    jz .Ltg_net_refused
    mov rdi, NET_RX_QUEUE               /* empty rings and buffers */
    xor eax, eax
    mov ecx, 0x400
    rep stosq
    mov qword ptr [NET_RX_QUEUE], NET_RX_BUFFER   /* rx descriptor 0: 2 KiB, device-written */
    mov dword ptr [NET_RX_QUEUE + 8], 2048
    mov word ptr [NET_RX_QUEUE + 12], 2
    mov word ptr [NET_RX_QUEUE + 0x104], 0
    mov word ptr [NET_RX_QUEUE + 0x102], 1
    xor ebx, ebx                        /* queue 0 (receive), then queue 1 (transmit) */
    mov r8d, NET_RX_QUEUE
.Ltg_net_queue:
    mov dword ptr [r10 + 0x30], ebx
    mov dword ptr [r10 + 0x38], 8
    mov dword ptr [r10 + 0x80], r8d
    mov dword ptr [r10 + 0x84], 0
    lea eax, [r8 + 0x100]
    mov dword ptr [r10 + 0x90], eax
    mov dword ptr [r10 + 0x94], 0
    lea eax, [r8 + 0x200]
    mov dword ptr [r10 + 0xa0], eax
    mov dword ptr [r10 + 0xa4], 0
    mov dword ptr [r10 + 0x44], 1
    add r8d, 0x400
    inc ebx
    cmp ebx, 2
    jb .Ltg_net_queue
    mov dword ptr [r10 + 0x70], 0xf     /* DRIVER_OK */
    mov dword ptr [r10 + 0x50], 0       /* a receive buffer is there */
    mov rdi, NET_TX_BUFFER + 12         /* the frame: broadcast, from our MAC */
    mov dword ptr [rdi], 0xffffffff
    mov word ptr [rdi + 4], 0xffff
    lea rsi, [rip + .Ltg_msg_net_mac]
    call .Ltg_puts
    xor ecx, ecx
.Ltg_net_mac:
    mov al, byte ptr [r10 + 0x100 + rcx]
    mov byte ptr [rdi + 6 + rcx], al
    inc ecx
    cmp ecx, 6
    jb .Ltg_net_mac
    mov word ptr [rdi + 12], {ethertype_be}
    lea rsi, [rdi + 6]
    call .Ltg_put_hex8                  /* 8 bytes: the MAC and the EtherType */
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
    lea rsi, [rip + .Ltg_msg_net_frame]
    lea rdi, [rdi + 14]
.Ltg_net_copy:
    mov al, byte ptr [rsi]
    mov byte ptr [rdi], al
    inc rsi
    inc rdi
    test al, al
    jnz .Ltg_net_copy
    mov qword ptr [NET_TX_QUEUE], NET_TX_BUFFER   /* tx descriptor 0: header and 60 bytes */
    mov dword ptr [NET_TX_QUEUE + 8], 72
    mov word ptr [NET_TX_QUEUE + 0x104], 0
    mov word ptr [NET_TX_QUEUE + 0x102], 1
    mov dword ptr [r10 + 0x50], 1       /* notify the transmit queue */
.Ltg_net_sent:
    pause
    cmp word ptr [NET_TX_QUEUE + 0x202], 1
    jne .Ltg_net_sent
    lea rsi, [rip + .Ltg_msg_net_sent]
    call .Ltg_puts
    xor r12d, r12d                      /* receive buffers used so far */
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r13, 0x800000000                /* about ten seconds of TSC at a few GHz */
    add r13, rax
.Ltg_net_wait:
    pause
    rdtsc
    shl rdx, 32
    or rax, rdx
    cmp rax, r13
    ja .Ltg_net_timeout
    movzx eax, word ptr [NET_RX_QUEUE + 0x202]
    cmp ax, r12w
    je .Ltg_net_wait
    inc r12d
    cmp word ptr [NET_RX_BUFFER + 24], {ethertype_be}
    je .Ltg_net_received
    movzx eax, word ptr [NET_RX_QUEUE + 0x102]    /* another frame: give the buffer back */
    mov edi, eax
    and edi, 7
    mov word ptr [NET_RX_QUEUE + 0x104 + rdi * 2], 0
    inc eax
    mov word ptr [NET_RX_QUEUE + 0x102], ax
    mov dword ptr [r10 + 0x50], 0
    jmp .Ltg_net_wait
.Ltg_net_received:
    lea rsi, [rip + .Ltg_msg_net_received]
    call .Ltg_puts
    lea eax, [r12d - 1]
    and eax, 7
    mov eax, dword ptr [NET_RX_QUEUE + 0x204 + rax * 8 + 4]   /* the used element's length */
    sub eax, 12
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_net_bytes]
    call .Ltg_puts
    mov byte ptr [NET_RX_BUFFER + 12 + 59], 0
    mov esi, NET_RX_BUFFER + 26
    call .Ltg_puts
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
    jmp .Ltg_net_done
.Ltg_net_timeout:
    lea rsi, [rip + .Ltg_msg_net_timeout]
    call .Ltg_puts
    jmp .Ltg_net_done
.Ltg_net_refused:
    lea rsi, [rip + .Ltg_msg_disk_refused]
    call .Ltg_puts
.Ltg_net_done:
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rbx
    jmp .Ltg_serial_next

.Ltg_disk:
    push rbx
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    call .Ltg_blk_init
    test eax, eax
    jnz .Ltg_disk_done
    lea rsi, [rip + .Ltg_msg_disk]
    call .Ltg_puts
    mov rax, qword ptr [r10 + 0x100]    /* config space: capacity in sectors */
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_disk_id]
    call .Ltg_puts
    mov rdi, BLK_ID
    xor eax, eax
    mov ecx, 3
    rep stosq
    mov eax, 8                          /* GET_ID */
    xor ebx, ebx
    mov ecx, BLK_ID
    mov edx, 20
    call .Ltg_blk_request
    mov esi, BLK_ID
    call .Ltg_puts
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
    xor eax, eax                        /* IN: the first 4 KiB */
    xor ebx, ebx
    mov ecx, BLK_BUFFER
    mov edx, 4096
    call .Ltg_blk_request
    mov r12d, eax
    lea rsi, [rip + .Ltg_msg_disk_read]
    call .Ltg_puts
    mov eax, r12d
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_disk_first]
    call .Ltg_puts
    mov esi, BLK_BUFFER
    call .Ltg_put_hex8
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
    mov rdi, BLK_BUFFER                 /* the pattern: byte i = i * 7 + 0x31 */
    xor ecx, ecx
.Ltg_pattern:
    lea eax, [rcx + rcx * 2]
    lea eax, [rax + rcx * 4]
    add eax, 0x31
    mov byte ptr [rdi + rcx], al
    inc ecx
    cmp ecx, 4096
    jb .Ltg_pattern
    mov eax, 1                          /* OUT */
    xor ebx, ebx
    mov ecx, BLK_BUFFER
    mov edx, 4096
    call .Ltg_blk_request
    mov r12d, eax
    lea rsi, [rip + .Ltg_msg_disk_write]
    call .Ltg_puts
    mov eax, r12d
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
    mov rdi, BLK_READ_BACK
    xor eax, eax
    mov ecx, 512
    rep stosq
    xor eax, eax                        /* IN: read it back */
    xor ebx, ebx
    mov ecx, BLK_READ_BACK
    mov edx, 4096
    call .Ltg_blk_request
    mov r12d, eax
    lea rsi, [rip + .Ltg_msg_disk_back]
    call .Ltg_puts
    mov eax, r12d
    call .Ltg_put_dec
    mov esi, BLK_BUFFER
    mov edi, BLK_READ_BACK
    mov ecx, 4096
    repe cmpsb
    lea rsi, [rip + .Ltg_msg_disk_same]
    je .Ltg_disk_compared
    lea rsi, [rip + .Ltg_msg_disk_different]
.Ltg_disk_compared:
    call .Ltg_puts
    mov eax, 4                          /* FLUSH */
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    call .Ltg_blk_request
    mov r12d, eax
    lea rsi, [rip + .Ltg_msg_disk_flush]
    call .Ltg_puts
    mov eax, r12d
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_newline]
    call .Ltg_puts
.Ltg_disk_done:
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rbx
    jmp .Ltg_serial_next

.Ltg_bench:
    push rbx
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    call .Ltg_blk_init
    test eax, eax
    jnz .Ltg_bench_done
    mov r13, qword ptr [r10 + 0x100]    /* capacity in sectors */
    xor r12d, r12d                      /* failed requests */
    mov r14d, 1                         /* OUT, then IN */
.Ltg_bench_seq:
    xor ebx, ebx
.Ltg_bench_seq_next:
    lea rax, [rbx + 2048]
    cmp rax, r13
    ja .Ltg_bench_seq_done
    mov eax, r14d
    mov ecx, BENCH_BUFFER
    mov edx, 0x100000
    call .Ltg_blk_request
    test eax, eax
    setnz al
    movzx eax, al
    add r12, rax
    add rbx, 2048
    jmp .Ltg_bench_seq_next
.Ltg_bench_seq_done:
    lea rsi, [rip + .Ltg_msg_bench_seq_write]
    test r14d, r14d
    jnz .Ltg_bench_seq_report
    lea rsi, [rip + .Ltg_msg_bench_seq_read]
.Ltg_bench_seq_report:
    call .Ltg_puts
    dec r14d
    jz .Ltg_bench_seq
    mov r8, r13                         /* 4 KiB blocks on the disk */
    shr r8, 3
    test r8, r8
    jz .Ltg_bench_report
    mov r15, 0x2545f4914f6cdd1d         /* the random generator's state */
    mov r14d, 1
.Ltg_bench_random:
    mov r9d, {random_ios}
.Ltg_bench_random_next:
    mov rax, 6364136223846793005
    imul r15, rax
    mov rax, 1442695040888963407
    add r15, rax
    mov rax, r15
    shr rax, 33
    xor edx, edx
    div r8
    lea rbx, [rdx * 8]
    mov eax, r14d
    mov ecx, BENCH_BUFFER
    mov edx, 4096
    call .Ltg_blk_request
    test eax, eax
    setnz al
    movzx eax, al
    add r12, rax
    dec r9d
    jnz .Ltg_bench_random_next
    lea rsi, [rip + .Ltg_msg_bench_rand_write]
    test r14d, r14d
    jnz .Ltg_bench_random_report
    lea rsi, [rip + .Ltg_msg_bench_rand_read]
.Ltg_bench_random_report:
    call .Ltg_puts
    dec r14d
    jz .Ltg_bench_random
.Ltg_bench_report:
    lea rsi, [rip + .Ltg_msg_bench_finished]
    call .Ltg_puts
    mov rax, r12
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_bench_errors]
    call .Ltg_puts
.Ltg_bench_done:
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rbx
    jmp .Ltg_serial_next

/* Sets up the virtio-blk device at VIRTIO_MMIO with one 8-entry queue. Returns eax = 0 and
   r10 = the device's registers, or prints why not and returns eax = 1. Clobbers rcx, rdi. */
.Ltg_blk_init:
    mov r10d, {virtio_mmio}
    cmp dword ptr [r10], 0x74726976     /* "virt" */
    jne .Ltg_blk_none
    cmp dword ptr [r10 + 4], 2          /* modern transport */
    jne .Ltg_blk_none
    cmp dword ptr [r10 + 8], 2          /* block device */
    jne .Ltg_blk_none
    mov dword ptr [r10 + 0x70], 0       /* reset */
    mov dword ptr [r10 + 0x70], 1       /* ACKNOWLEDGE */
    mov dword ptr [r10 + 0x70], 3       /* DRIVER */
    mov dword ptr [r10 + 0x14], 0
    mov eax, dword ptr [r10 + 0x10]
    and eax, 0x220                      /* of the device's features, RO and FLUSH */
    mov dword ptr [r10 + 0x24], 0
    mov dword ptr [r10 + 0x20], eax
    mov dword ptr [r10 + 0x24], 1
    mov dword ptr [r10 + 0x20], 1       /* VERSION_1 */
    mov dword ptr [r10 + 0x70], 0xb     /* FEATURES_OK */
    test dword ptr [r10 + 0x70], 8
    jz .Ltg_blk_refused
    mov rdi, VQ_DESC                    /* empty rings */
    xor eax, eax
    mov ecx, 0x80
    rep stosq
    mov dword ptr [r10 + 0x30], 0       /* queue 0 */
    cmp dword ptr [r10 + 0x34], 8
    jb .Ltg_blk_refused
    mov dword ptr [r10 + 0x38], 8
    mov dword ptr [r10 + 0x80], VQ_DESC
    mov dword ptr [r10 + 0x84], 0
    mov dword ptr [r10 + 0x90], VQ_AVAIL
    mov dword ptr [r10 + 0x94], 0
    mov dword ptr [r10 + 0xa0], VQ_USED
    mov dword ptr [r10 + 0xa4], 0
    mov dword ptr [r10 + 0x44], 1       /* queue ready */
    mov dword ptr [r10 + 0x70], 0xf     /* DRIVER_OK */
    xor eax, eax
    ret
.Ltg_blk_none:
    lea rsi, [rip + .Ltg_msg_disk_none]
    call .Ltg_puts
    mov eax, 1
    ret
.Ltg_blk_refused:
    lea rsi, [rip + .Ltg_msg_disk_refused]
    call .Ltg_puts
    mov dword ptr [r10 + 0x70], 0x80    /* FAILED */
    mov eax, 1
    ret

/* One request: eax = type, rbx = sector, rcx = buffer, edx = its length (0: none). Waits for
   the device and returns eax = the status byte. Clobbers rdi, r10, r11. */
.Ltg_blk_request:
    mov dword ptr [BLK_HEADER], eax
    mov dword ptr [BLK_HEADER + 4], 0
    mov qword ptr [BLK_HEADER + 8], rbx
    mov byte ptr [BLK_STATUS], 0xff
    mov r11d, eax
    mov qword ptr [VQ_DESC], BLK_HEADER
    mov dword ptr [VQ_DESC + 8], 16
    mov word ptr [VQ_DESC + 12], 1      /* NEXT */
    mov word ptr [VQ_DESC + 14], 1
    test edx, edx
    jz .Ltg_blk_no_data
    mov qword ptr [VQ_DESC + 16], rcx
    mov dword ptr [VQ_DESC + 24], edx
    mov ax, 1                           /* NEXT; the device reads the data */
    test r11d, r11d                     /* IN and GET_ID: the device writes it */
    jz .Ltg_blk_device_writes
    cmp r11d, 8
    jne .Ltg_blk_data_flags
.Ltg_blk_device_writes:
    mov ax, 3                           /* NEXT | WRITE */
.Ltg_blk_data_flags:
    mov word ptr [VQ_DESC + 28], ax
    mov word ptr [VQ_DESC + 30], 2
    jmp .Ltg_blk_status
.Ltg_blk_no_data:
    mov word ptr [VQ_DESC + 14], 2
.Ltg_blk_status:
    mov qword ptr [VQ_DESC + 32], BLK_STATUS
    mov dword ptr [VQ_DESC + 40], 1
    mov word ptr [VQ_DESC + 44], 2      /* WRITE */
    mov word ptr [VQ_DESC + 46], 0
    movzx eax, word ptr [VQ_AVAIL + 2]
    mov edi, eax
    and edi, 7
    mov word ptr [VQ_AVAIL + 4 + rdi * 2], 0
    inc eax
    mov word ptr [VQ_AVAIL + 2], ax     /* x86 keeps stores in order: the entry is seen first */
    mov r10d, {virtio_mmio}
    mov dword ptr [r10 + 0x50], 0       /* notify queue 0 */
.Ltg_blk_wait:
    pause
    cmp word ptr [VQ_USED + 2], ax
    jne .Ltg_blk_wait
    movzx eax, byte ptr [BLK_STATUS]
    ret

/* rsi = 8 bytes, printed in hex; clobbers rax, rcx, rdx, rsi, r11 */
.Ltg_put_hex8:
    mov ecx, 8
    lea r11, [rip + .Ltg_hex_digits]
    mov dx, COM1
.Ltg_hex_next:
    movzx eax, byte ptr [rsi]
    shr eax, 4
    mov al, byte ptr [r11 + rax]
    out dx, al
    movzx eax, byte ptr [rsi]
    and eax, 15
    mov al, byte ptr [r11 + rax]
    out dx, al
    inc rsi
    dec ecx
    jnz .Ltg_hex_next
    ret

.Ltg_emulate:
    cli                                 /* from here the software KVM emulates... */
    popcnt rax, rax                     /* ...and cannot emulate this */
    sti
    lea rsi, [rip + .Ltg_msg_native]
    call .Ltg_puts
    jmp .Ltg_serial_next

.Ltg_fill:
    push rdi
    push r8
    push r9
    mov rcx, qword ptr [INFO + 16]      /* fill [4 MiB, min(memory, 3 GiB)) */
    mov rax, 0xc0000000
    cmp rcx, rax
    cmova rcx, rax
    sub rcx, 0x400000
    mov rdi, 0x400000
    shr rcx, 3
    mov rax, 0x5a5a5a5a5a5a5a5a
    rep stosq
    lea rsi, [rip + .Ltg_msg_filled]
    call .Ltg_puts
    mov rax, qword ptr [INFO + 16]
    mov rcx, 0xc0000000
    cmp rax, rcx
    cmova rax, rcx
    sub rax, 0x400000
    shr rax, 20
    call .Ltg_put_dec
    lea rsi, [rip + .Ltg_msg_mib]
    call .Ltg_puts
    pop r9
    pop r8
    pop rdi
    jmp .Ltg_serial_next

.Ltg_keyboard:
    push rax
    push rcx
    push rdx
    push rsi
.Ltg_keyboard_next:
    in al, 0x64
    test al, 1
    jz .Ltg_irq_done
    in al, 0x60
    cmp al, 0x71                        /* Delete, the last byte of Ctrl-Alt-Del */
    jne .Ltg_keyboard_next
    lea rsi, [rip + .Ltg_msg_cad]
    call .Ltg_puts
    jmp .Ltg_power_off

.Ltg_irq_done:
    call .Ltg_eoi
    pop rsi
    pop rdx
    pop rcx
    pop rax
.Ltg_spurious:
    iretq

.Ltg_reset:
    lea rsi, [rip + .Ltg_msg_reset]
    call .Ltg_puts
    mov al, 0xfe
    out 0x64, al
    jmp .Ltg_halt

.Ltg_power_off:
    lea rsi, [rip + .Ltg_msg_power_off]
    call .Ltg_puts
    mov dx, SLEEP_CONTROL
    mov al, S5_SLEEP
    out dx, al
    jmp .Ltg_halt

.Ltg_spin:
    lea rsi, [rip + .Ltg_msg_spin]
    call .Ltg_puts
    cli
.Ltg_spin_loop:
    jmp .Ltg_spin_loop

.Ltg_unexpected:
    lea rsi, [rip + .Ltg_msg_unexpected]
    call .Ltg_puts
.Ltg_crash:
    lea rsi, [rip + .Ltg_msg_crash]
    call .Ltg_puts
    lidt [rip + .Ltg_null_idtr]         /* no IDT: the next exception is a triple fault */
    ud2

.Ltg_halt:
    hlt
    jmp .Ltg_halt

    .balign 8
.Ltg_idtr:
    .word 4095
    .quad IDT
.Ltg_null_idtr:
    .word 0
    .quad 0
.Ltg_msg_banner:
    .asciz "cimvirt test guest: "
.Ltg_msg_vcpus:
    .asciz " vCPUs, "
.Ltg_msg_mib:
    .asciz " MiB\n"
.Ltg_msg_online:
    .asciz " vCPUs online\n"
.Ltg_msg_filled:
    .asciz "cimvirt test guest: filled "
.Ltg_msg_native:
    .asciz "cimvirt test guest: popcnt ran with interrupts disabled\n"
.Ltg_msg_cad:
    .asciz "cimvirt test guest: Ctrl-Alt-Del\n"
.Ltg_msg_reset:
    .asciz "cimvirt test guest: resetting\n"
.Ltg_msg_power_off:
    .asciz "cimvirt test guest: powering off\n"
.Ltg_msg_spin:
    .asciz "cimvirt test guest: spinning with interrupts disabled\n"
.Ltg_msg_unexpected:
    .asciz "cimvirt test guest: unexpected exception or interrupt\n"
.Ltg_msg_crash:
    .asciz "cimvirt test guest: triple fault\n"
.Ltg_msg_newline:
    .asciz "\n"
.Ltg_msg_text:
    .asciz "cimvirt test guest: text ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl\n"
.Ltg_msg_text_done:
    .asciz "cimvirt test guest: text done\n"
.Ltg_hex_digits:
    .ascii "0123456789abcdef"
.Ltg_msg_disk:
    .asciz "cimvirt test guest: disk: "
.Ltg_msg_disk_id:
    .asciz " sectors, ID "
.Ltg_msg_disk_read:
    .asciz "cimvirt test guest: disk: read status "
.Ltg_msg_disk_first:
    .asciz ", first bytes "
.Ltg_msg_disk_write:
    .asciz "cimvirt test guest: disk: write status "
.Ltg_msg_disk_back:
    .asciz "cimvirt test guest: disk: read back status "
.Ltg_msg_disk_same:
    .asciz ", same data\n"
.Ltg_msg_disk_different:
    .asciz ", different data\n"
.Ltg_msg_disk_flush:
    .asciz "cimvirt test guest: disk: flush status "
.Ltg_msg_disk_none:
    .asciz "cimvirt test guest: disk: no virtio block device\n"
.Ltg_msg_disk_refused:
    .asciz "cimvirt test guest: disk: the device refused the driver\n"
.Ltg_msg_net_none:
    .asciz "cimvirt test guest: net: no virtio network device\n"
.Ltg_msg_net_mac:
    .asciz "cimvirt test guest: net: MAC and EtherType "
.Ltg_msg_net_frame:
    .asciz "cimvirt test guest frame"
.Ltg_msg_net_sent:
    .asciz "cimvirt test guest: net: sent 60 bytes\n"
.Ltg_msg_net_received:
    .asciz "cimvirt test guest: net: received "
.Ltg_msg_net_bytes:
    .asciz " bytes: "
.Ltg_msg_net_timeout:
    .asciz "cimvirt test guest: net: nothing received\n"
.Ltg_msg_bench_seq_write:
    .asciz "cimvirt test guest: bench: seq-write done\n"
.Ltg_msg_bench_seq_read:
    .asciz "cimvirt test guest: bench: seq-read done\n"
.Ltg_msg_bench_rand_write:
    .asciz "cimvirt test guest: bench: rand-write done\n"
.Ltg_msg_bench_rand_read:
    .asciz "cimvirt test guest: bench: rand-read done\n"
.Ltg_msg_bench_finished:
    .asciz "cimvirt test guest: bench: finished, "
.Ltg_msg_bench_errors:
    .asciz " failed requests\n"
cimvirt_test_guest_end:
    .popsection
"#,
    info = const layout::INFO,
    heartbeat = const layout::HEARTBEAT,
    idt = const layout::IDT,
    stacks = const layout::STACKS,
    timer_count = const TIMER_COUNT,
    virtio_mmio = const layout::VIRTIO_MMIO,
    vq_desc = const layout::VQ_DESC,
    vq_avail = const layout::VQ_AVAIL,
    vq_used = const layout::VQ_USED,
    blk_header = const layout::BLK_HEADER,
    blk_status = const layout::BLK_STATUS,
    blk_id = const layout::BLK_ID,
    blk_buffer = const layout::BLK_BUFFER,
    blk_read_back = const layout::BLK_READ_BACK,
    bench_buffer = const layout::BENCH_BUFFER,
    random_ios = const disk_bench::RANDOM_IOS,
    net_rx_queue = const layout::NET_RX_QUEUE,
    net_tx_queue = const layout::NET_TX_QUEUE,
    net_rx_buffer = const layout::NET_RX_BUFFER,
    net_tx_buffer = const layout::NET_TX_BUFFER,
    ethertype_be = const NET_ETHERTYPE.swap_bytes(),
    virtio_devices = const crate::devices::virtio::layout::MAX_DEVICES,
    text_lines = const TEXT_LINES,
);

// The two labels `global_asm!` defines around the image; only their addresses are used.
unsafe extern "C" {
    static cimvirt_test_guest_start: u8;
    static cimvirt_test_guest_end: u8;
}

/// The test guest's machine code, to be loaded at [`layout::CODE`].
pub fn image() -> &'static [u8] {
    // SAFETY: both symbols are defined by the `global_asm!` block above, in one section, start
    // before end; the bytes between them are the assembled code, immutable for the program's
    // whole life.
    unsafe {
        let start = &raw const cimvirt_test_guest_start;
        let end = &raw const cimvirt_test_guest_end;
        std::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_fits_below_the_information_block_and_starts_with_the_marker() {
        let code = image();
        assert!(
            code.len() > 200 && (code.len() as u64) < layout::INFO - layout::CODE,
            "{} bytes",
            code.len()
        );
        assert_eq!(code[..2], [0xe6, 0x80], "out 0x80, al");
    }
}
