; two_engines: a producer/consumer pair on two engines of one chip, synchronised
; by a chip flag through shared DRAM.
;
;   engine 0 (producer): mid = x * x        then sets flag 0 to 1
;   engine 1 (consumer): waits for flag 0 >= 1, then out = mid + 1.0
;
; Every engine runs this same program and branches on its engine id
; (csrr engine_id); engines beyond the second halt at once. flag.set takes
; effect only after all earlier work of its engine has completed, so the
; consumer cannot see the flag before `mid` is in DRAM. Run it on a chip
; with two engines:
;   polymorph sim examples/two_engines.pasm --config examples/two_engines.cfg \
;       --input x=x.npy --output mid=mid.npy --output out=out.npy

.equ N, 1024
.equ BYTES, N * 4
.equ READY, 0                   ; the flag the consumer waits on

        .dram 0x0
x:      .zero BYTES
        .tensor x, f32, N
mid:    .zero BYTES             ; written by engine 0, read by engine 1
        .tensor mid, f32, N
out:    .zero BYTES
        .tensor out, f32, N

.equ SIN, 0x0                   ; SRAM (each engine has its own)
.equ SOUT, SIN + BYTES

        .text
        li      r1, BYTES
        li      r2, 1
        dma.shape r1, r2, r2
        li      r3, N
        li      r20, SIN
        li      r21, SOUT
        csrr    r4, engine_id
        beq     r4, r0, producer
        li      r5, 1
        beq     r4, r5, consumer
        halt                            ; engines 2.. have nothing to do

producer:
        li      r10, x
        li      r11, mid
        dma.ld  r20, r10
        fence   dma.ld
        vmul.f32 r21, r20, r20, r3      ; mid = x * x
        fence   vec
        dma.st  r11, r21
        flag.set READY, 1               ; after the store has completed
        halt

consumer:
        flag.wait READY, 1              ; stall until the producer is done
        li      r10, mid
        li      r11, out
        dma.ld  r20, r10
        fence   dma.ld
        li      r6, f32(1.0)
        vadds.f32 r21, r20, r6, r3      ; out = mid + 1.0
        fence   vec
        dma.st  r11, r21
        halt
