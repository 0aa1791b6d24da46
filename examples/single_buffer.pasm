; single_buffer: the computation of double_buffer.pasm,
; y = ((C3*x + C2)*x + C1)*x + C0 over N f32 elements in tiles, with one
; input and one output buffer, so every step waits for the one before:
; load tile i, compute it, store it, then the next tile. It is the
; serialised baseline double_buffer.pasm is measured against
; (tests/oracle/test_examples.py); the results are bit-identical.
;   polymorph sim examples/single_buffer.pasm --input x=x.npy --output y=y.npy

.equ N, 16384
.equ TILE, 2048
.equ TILES, N / TILE
.equ TILE_BYTES, TILE * 4

        .dram 0x0
x:      .zero N * 4
        .tensor x, f32, N
y:      .zero N * 4
        .tensor y, f32, N

.equ IN, 0x0
.equ OUT, IN + TILE_BYTES

        .text
        li      r1, TILE_BYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r3, TILE
        li      r6, f32(0.5)            ; C3
        li      r7, f32(-1.25)          ; C2
        li      r8, f32(2.0)            ; C1
        li      r9, f32(0.375)          ; C0
        li      r10, x
        li      r11, y
        li      r20, IN
        li      r22, OUT
        li      r12, TILES
tile:
        dma.ld  r20, r10+               ; load tile i ...
        fence   dma.ld                  ; ... and wait for it
        vmuls.f32 r22, r20, r6, r3
        vadds.f32 r22, r22, r7, r3
        vmul.f32  r22, r22, r20, r3
        vadds.f32 r22, r22, r8, r3
        vmul.f32  r22, r22, r20, r3
        vadds.f32 r22, r22, r9, r3
        fence   vec                     ; compute done
        dma.st  r11+, r22
        fence   dma.st                  ; stored; only now the next load may reuse IN
        loop    r12, tile
        halt
