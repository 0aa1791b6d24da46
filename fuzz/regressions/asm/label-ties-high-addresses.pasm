; Round-trip seed: labels tied at one address in non-canonical source order
; (the table sorts them by name), sections at and above 2^63, a label at the
; very end of the address space, and a tensor of the largest element count.
zeta: beta: Alpha: _mid: nop
b.2: b_1: b1: jmp beta
    halt
.entry b_1
.dram 0xFFFFFFFFFFFFFFF0
top: .zero 15
last:
.dram 0x8000000000000000
mid: .byte 1
.sram 0x8
sz: sy: .word 7
.tensor sy, int8, 0x7FFFFFFFFFFFFFFF
