; matmul: y = silu(x @ w^T + bias), a dense layer on the tensor unit.
;
;   x    64 x 256 bf16 activations (row-major)
;   w   128 x 256 weights in GGUF Q4_0 (row n = the 256 weights of output n,
;                 the nn.Linear / GGUF layout), decoded to bf16 in the array
;   bias 128 f32
;   y    64 x 128 bf16
;
; Each output is an fp32 sum that starts at +0 and adds the exact bf16
; products in k order (fmaf); the epilogue adds the bias, applies SiLU with
; the LFU's built-in table and rounds to bf16 (docs/tensor.md). The host
; gives float32 arrays; `--input w=` quantises w to Q4_0 on the way in.
;   polymorph sim examples/matmul.pasm --input x=x.npy --input w=w.npy \
;       --input bias=b.npy --output y=y.npy

.equ M, 64
.equ N, 128
.equ K, 256
.equ XBYTES, M * K * 2          ; bf16
.equ WBYTES, N * K / 32 * 18    ; Q4_0: 18 bytes per block of 32
.equ BBYTES, N * 4              ; f32
.equ YBYTES, M * N * 2          ; bf16

        .dram 0x0
x:      .zero XBYTES
        .tensor x, bf16, M, K
w:      .zero WBYTES
        .tensor w, q4_0, N, K
bias:   .zero BBYTES
        .tensor bias, f32, N
y:      .zero YBYTES
        .tensor y, bf16, M, N

; SRAM layout: operands, then the result.
.equ SX, 0x0
.equ SW, SX + XBYTES
.equ SBIAS, SW + WBYTES
.equ SY, SBIAS + BBYTES
.equ ACC, 0x0                   ; accumulator memory byte address

        .text
        lfu.cfg 0, silu         ; slot 0: SiLU (loads while the DMA runs)
        li      r2, 1
        li      r1, XBYTES
        dma.shape r1, r2, r2
        li      r10, x
        li      r13, SX
        dma.ld  r13, r10
        li      r1, WBYTES
        dma.shape r1, r2, r2
        li      r11, w
        li      r14, SW
        dma.ld  r14, r11
        li      r1, BBYTES
        dma.shape r1, r2, r2
        li      r12, bias
        li      r15, SBIAS
        dma.ld  r15, r12
        fence   dma.ld

        li      r1, M
        li      r2, N
        li      r3, K
        tshape  r1, r2, r3, 0   ; dataflow from the config (edge: os)
        li      r4, ACC
        tmm.q4_0 r4, r13, r14   ; acc = x @ w^T
        li      r6, 0           ; scale (unused: mode bit 1 clear)
        li      r7, 0x05        ; bias + activation, LFU slot 0
        tepi    r15, r6, r7
        li      r16, SY
        tout.bf16 r16, r4       ; y = silu(acc + bias) in bf16
        fence   tensor

        li      r1, YBYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r17, y
        dma.st  r17, r16
        halt
