; double_buffer: y = ((C3*x + C2)*x + C1)*x + C0 over N f32 elements, in
; tiles, with the DMA load of tile i+1 overlapping the vector work on tile i.
;
; Two input buffers (IN0/IN1) and two output buffers (OUT0/OUT1) alternate:
; while the vector unit evaluates the polynomial on one input buffer, the
; load engine fills the other with the next tile, and the store engine
; drains the previous result. Per tile the critical path is about
; max(load, compute + store) instead of load + compute + store; compare
; examples/single_buffer.pasm, the same computation with one buffer each
; (tests/oracle/test_examples.py measures both side by side).
;
; Synchronisation is explicit, so the program is also correct with
; hazards = report: at the top of each iteration `fence dma.ld|dma.st` waits
; for tile i to arrive and for the previous store (which read the output
; buffer this iteration writes); `fence vec` orders the compute before the
; store of its result.
;   polymorph sim examples/double_buffer.pasm --input x=x.npy --output y=y.npy

.equ N, 16384                   ; elements
.equ TILE, 2048                 ; elements per tile
.equ TILES, N / TILE
.equ TILE_BYTES, TILE * 4

        .dram 0x0
x:      .zero N * 4
        .tensor x, f32, N
y:      .zero N * 4
        .tensor y, f32, N

.equ IN0, 0x0
.equ IN1, IN0 + TILE_BYTES
.equ OUT0, IN1 + TILE_BYTES
.equ OUT1, OUT0 + TILE_BYTES

        .reg incur, r20         ; input buffer of the tile being computed
        .reg innext, r21        ; input buffer being filled
        .reg outcur, r22        ; output buffer being computed
        .reg outprev, r23       ; output buffer being stored
        .reg xp, r10            ; next DRAM tile to load (post-incremented)
        .reg yp, r11            ; next DRAM tile to store (post-incremented)
        .reg left, r12          ; tiles still to compute (loop counter)

        .text
        li      r1, TILE_BYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r3, TILE                ; n for every vector op
        li      r6, f32(0.5)            ; C3 (fp32 bits)
        li      r7, f32(-1.25)          ; C2
        li      r8, f32(2.0)            ; C1
        li      r9, f32(0.375)          ; C0
        li      r13, 1
        li      xp, x
        li      yp, y
        li      incur, IN0
        li      innext, IN1
        li      outcur, OUT0
        li      outprev, OUT1
        li      left, TILES

        dma.ld  incur, xp+              ; prologue: tile 0
tile:
        fence   dma.ld|dma.st           ; tile i is in; the store of i-1 has read outcur's twin
        beq     left, r13, compute      ; last tile: nothing to prefetch
        dma.ld  innext, xp+             ; prefetch tile i+1 (overlaps the compute below)
compute:
        vmuls.f32 outcur, incur, r6, r3         ; t = x * C3
        vadds.f32 outcur, outcur, r7, r3        ; t = t + C2
        vmul.f32  outcur, outcur, incur, r3     ; t = t * x
        vadds.f32 outcur, outcur, r8, r3        ; t = t + C1
        vmul.f32  outcur, outcur, incur, r3     ; t = t * x
        vadds.f32 outcur, outcur, r9, r3        ; y = t + C0
        fence   vec
        dma.st  yp+, outcur             ; store tile i (overlaps the next compute's prefetch)

        add     r5, incur, r0           ; swap the input buffers
        add     incur, innext, r0
        add     innext, r5, r0
        add     r5, outcur, r0          ; swap the output buffers
        add     outcur, outprev, r0
        add     outprev, r5, r0
        loop    left, tile
        halt
