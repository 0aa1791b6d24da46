; softmax: y[r, :] = softmax(x[r, :]) for a 64 x 256 f32 matrix, row by row.
;
;   m[r]  = max_j x[r, j]                     vredmax
;   e     = exp(x - m[r])                     vsubr, then the LFU's exp table
;   s[r]  = sum_j e[r, j]                     vredsum
;   y     = e * (1 / s[r])                    LFU recip on 64 sums, vmulr
;
; Subtracting the row maximum keeps exp's argument <= 0, so nothing
; overflows. exp and 1/x are LFU tables (never libm), so the result is
; bit-exact on every host; its error against float64 is the LFU's error
; (docs/lfu.md) plus fp32 rounding. The whole matrix (64 KiB) fits in SRAM,
; so one DMA brings it in and one takes the result out.
;   polymorph sim examples/softmax.pasm --input x=x.npy --output y=y.npy

.equ ROWS, 64
.equ COLS, 256
.equ ELEMS, ROWS * COLS
.equ BYTES, ELEMS * 4

        .dram 0x0
x:      .zero BYTES
        .tensor x, f32, ROWS, COLS
y:      .zero BYTES
        .tensor y, f32, ROWS, COLS

; SRAM layout: the matrix, its exponentials, then the per-row vectors.
.equ SX, 0x0                    ; x, then x - m in place
.equ SE, SX + BYTES             ; e = exp(x - m), then y in place
.equ SM, SE + BYTES             ; row maxima      (ROWS f32)
.equ SS, SM + ROWS * 4          ; row sums        (ROWS f32)
.equ SR, SS + ROWS * 4          ; 1 / row sums    (ROWS f32)

        .text
        lfu.cfg 0, exp          ; slot 0: exp   (table loads overlap the DMA)
        lfu.cfg 1, recip        ; slot 1: 1/x

        li      r1, BYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r10, x
        li      r11, y
        li      r20, SX
        li      r21, SE
        li      r22, SM
        li      r23, SS
        li      r24, SR
        li      r3, COLS        ; n: elements per row
        li      r4, ROWS
        li      r5, ELEMS

        dma.ld  r20, r10        ; SX <- x
        fence   dma.ld|lfu

        vredmax.f32 r22, r20, r3, r4        ; m[r] = max of row r
        vsubr.f32   r20, r20, r22, r3, r4   ; x[r, j] -= m[r]
        fence   vec
        lfu.f32 0, r21, r20, r5             ; e = exp(x - m), all 16384 elements
        fence   lfu
        vredsum.f32 r23, r21, r3, r4        ; s[r] = sum of row r
        fence   vec
        lfu.f32 1, r24, r23, r4             ; 1 / s[r]
        fence   lfu
        vmulr.f32   r21, r21, r24, r3, r4   ; y[r, j] = e[r, j] * (1 / s[r])
        fence   vec

        dma.st  r11, r21        ; y <- SE
        halt
