; vector_add: c = a + b for two f32 vectors of N elements.
;
; The simplest complete program: both inputs come in from DRAM with one DMA
; each, the vector unit adds them in SRAM, one DMA takes the sum back out.
; a, b and c are declared with .tensor so the host can bind them:
;   polymorph sim examples/vector_add.pasm --input a=a.npy --input b=b.npy --output c=c.npy
; The hardware interlock orders the DMA and vector work; the fences make the
; dependencies explicit so the program is also correct with hazards = report.

.equ N, 4096                    ; elements per vector
.equ BYTES, N * 4               ; f32

; ---- DRAM: the tensors the host binds ----
        .dram 0x0
a:      .zero BYTES
        .tensor a, f32, N
b:      .zero BYTES
        .tensor b, f32, N
c:      .zero BYTES
        .tensor c, f32, N

; ---- SRAM scratch: three buffers back to back ----
.equ SA, 0x0
.equ SB, SA + BYTES
.equ SC, SB + BYTES

        .text
start:
        li      r1, BYTES       ; one contiguous row of BYTES bytes
        li      r2, 1
        dma.shape r1, r2, r2    ; row bytes, rows, planes

        li      r10, a          ; DRAM addresses
        li      r11, b
        li      r12, c
        li      r13, SA         ; SRAM addresses
        li      r14, SB
        li      r15, SC
        dma.ld  r13, r10        ; SA <- a
        dma.ld  r14, r11        ; SB <- b
        fence   dma.ld          ; both inputs are in SRAM

        li      r3, N
        vadd.f32 r15, r13, r14, r3   ; SC[i] = SA[i] + SB[i]
        fence   vec

        dma.st  r12, r15        ; c <- SC
        halt                    ; halt waits for every unit to drain
