; bf16_mul: c = a * b elementwise, stored in bf16 (2048 elements).
;
; The vector unit reads bf16 operands, multiplies in fp32 and rounds the
; product to bf16 (round to nearest even): the same as
;   (a.astype(float32) * b.astype(float32)).astype(bfloat16)
; The host gives float32 arrays; `polymorph sim --input` rounds them to bf16
; (pm_format_encode) and `--output` decodes c back to float32 exactly.
;   polymorph sim examples/bf16_mul.pasm --input a=a.npy --input b=b.npy --output c=c.npy

.equ N, 2048
.equ BYTES, N * 2               ; bf16

        .dram 0x0
a:      .zero BYTES
        .tensor a, bf16, N
b:      .zero BYTES
        .tensor b, bf16, N
c:      .zero BYTES
        .tensor c, bf16, N

.equ SA, 0x0
.equ SB, SA + BYTES
.equ SC, SB + BYTES

        .text
        li      r1, BYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r10, a
        li      r11, b
        li      r12, c
        li      r13, SA
        li      r14, SB
        li      r15, SC
        dma.ld  r13, r10
        dma.ld  r14, r11
        fence   dma.ld
        li      r3, N
        vmul.bf16 r15, r13, r14, r3     ; bf16 x bf16 -> fp32 -> bf16 (RNE)
        fence   vec
        dma.st  r12, r15
        halt
