/* Polymorph ISA: the one table every instruction is defined in.
 * Encoder, decoder, assembler, disassembler, simulator dispatch and
 * docs/isa.md are all generated from these rows. Adding an instruction is one
 * row here and one small body in src/sim/exec_*.c.
 *
 * Row: PM_INSN(ID, opcode, "mnemonic", UNIT, "operands", "one-line doc")
 *
 * Encoding: one 64-bit little-endian word. Bits 0..7 hold the opcode; the
 * operands follow from bit 8 upward in the order written, each with the width
 * of its kind; every bit above the last operand must be zero.
 *
 * Operand kinds (one letter each, in the operands string):
 *   t  format suffix, 5 bits     written after the mnemonic: vadd.bf16, vcvt.bf16.f32
 *   r  scalar register, 5 bits   r0..r31 (r0 reads as zero, writes are dropped)
 *   a  address register, 6 bits  rN or rN+ (post-increment by the bytes the
 *                                instruction touched through that operand)
 *   i  signed immediate, 32 bits
 *   w  signed immediate, 48 bits
 *   l  code label, 32 bits       absolute instruction index
 *   f  LFU built-in function, 5  exp, exp2, sigmoid, tanh, silu, gelu, rsqrt, recip
 *   s  LFU table slot, 3 bits    0..7 (the config says how many are resident)
 *   m  unit mask, 8 bits         dma.ld|dma.st|vec|lfu|tensor, or all
 *   g  chip flag, 8 bits         0..255 (the config says how many exist)
 *   c  control register, 8 bits  engine_id, engines, lanes, cycle
 *
 * Opcode space: 0x00-0x2F control/scalar, 0x30-0x3F DMA, 0x40-0x6F vector,
 * 0x70-0x7F LFU, 0x80-0x8F synchronisation and trace, 0xA0-0xAF LFU fabric,
 * 0xC0-0xDF reserved for the tensor unit. Opcodes are part of the binary format: never renumber.
 */

/* clang-format off */
/* ---- control and scalar ALU (executed by the scalar control core) ---- */
PM_INSN(NOP,     0x00, "nop",      CTRL, "",      "Do nothing; occupies one issue slot.")
PM_INSN(HALT,    0x01, "halt",     CTRL, "",      "Stop this engine once every unit has drained.")
PM_INSN(LI,      0x02, "li",       CTRL, "rw",    "rd = sign-extended 48-bit immediate.")
PM_INSN(ADD,     0x03, "add",      CTRL, "rrr",   "rd = ra + rb (64-bit, wrapping).")
PM_INSN(SUB,     0x04, "sub",      CTRL, "rrr",   "rd = ra - rb.")
PM_INSN(MUL,     0x05, "mul",      CTRL, "rrr",   "rd = ra * rb (low 64 bits).")
PM_INSN(AND,     0x06, "and",      CTRL, "rrr",   "rd = ra & rb.")
PM_INSN(OR,      0x07, "or",       CTRL, "rrr",   "rd = ra | rb.")
PM_INSN(XOR,     0x08, "xor",      CTRL, "rrr",   "rd = ra ^ rb.")
PM_INSN(SHL,     0x09, "shl",      CTRL, "rrr",   "rd = ra << (rb & 63).")
PM_INSN(SHR,     0x0A, "shr",      CTRL, "rrr",   "rd = ra >> (rb & 63), logical.")
PM_INSN(SRA,     0x0B, "sra",      CTRL, "rrr",   "rd = ra >> (rb & 63), arithmetic.")
PM_INSN(SLT,     0x0C, "slt",      CTRL, "rrr",   "rd = (ra < rb) signed ? 1 : 0.")
PM_INSN(SLTU,    0x0D, "sltu",     CTRL, "rrr",   "rd = (ra < rb) unsigned ? 1 : 0.")
PM_INSN(MIN,     0x0E, "min",      CTRL, "rrr",   "rd = signed minimum of ra, rb.")
PM_INSN(MAX,     0x0F, "max",      CTRL, "rrr",   "rd = signed maximum of ra, rb.")
PM_INSN(ADDI,    0x10, "addi",     CTRL, "rri",   "rd = ra + imm.")
PM_INSN(MULI,    0x11, "muli",     CTRL, "rri",   "rd = ra * imm.")
PM_INSN(ANDI,    0x12, "andi",     CTRL, "rri",   "rd = ra & imm.")
PM_INSN(SHLI,    0x13, "shli",     CTRL, "rri",   "rd = ra << (imm & 63).")
PM_INSN(SHRI,    0x14, "shri",     CTRL, "rri",   "rd = ra >> (imm & 63), logical.")
PM_INSN(LW,      0x15, "lw",       CTRL, "rri",   "rd = sign-extended 32-bit word from SRAM[ra + imm] (waits for pending writes there).")
PM_INSN(SW,      0x16, "sw",       CTRL, "rri",   "SRAM[ra + imm] = low 32 bits of rd (the first operand is the source).")
PM_INSN(BEQ,     0x17, "beq",      CTRL, "rrl",   "Branch to label if ra == rb.")
PM_INSN(BNE,     0x18, "bne",      CTRL, "rrl",   "Branch to label if ra != rb.")
PM_INSN(BLT,     0x19, "blt",      CTRL, "rrl",   "Branch to label if ra < rb (signed).")
PM_INSN(BGE,     0x1A, "bge",      CTRL, "rrl",   "Branch to label if ra >= rb (signed).")
PM_INSN(JMP,     0x1B, "jmp",      CTRL, "l",     "Jump to label.")
PM_INSN(LOOP,    0x1C, "loop",     CTRL, "rl",    "Counted loop: rc = rc - 1; branch to label if rc != 0 (zero-overhead).")
PM_INSN(CSRR,    0x1D, "csrr",     CTRL, "rc",    "rd = control register (engine_id, engines, lanes, cycle).")

/* ---- DMA between DRAM and SRAM (2-D/3-D strided descriptors) ---- */
PM_INSN(DSHAPE,  0x30, "dma.shape",  CTRL,   "rrr",  "Set the DMA shape: bytes per row, rows, planes (read from registers).")
PM_INSN(DSTRIDE, 0x31, "dma.stride", CTRL,   "rrrr", "Set DMA strides in bytes: DRAM row, DRAM plane, SRAM row, SRAM plane.")
PM_INSN(DLD,     0x32, "dma.ld",     DMA_LD, "aa",   "Load DRAM -> SRAM with the current shape and strides: dma.ld sram, dram.")
PM_INSN(DST,     0x33, "dma.st",     DMA_ST, "aa",   "Store SRAM -> DRAM with the current shape and strides: dma.st dram, sram.")

/* ---- vector unit: SRAM to SRAM, fp32 internally, n elements in a register ---- */
PM_INSN(VADD,    0x40, "vadd",    VEC, "taaar",   "d[i] = a[i] + b[i] for i < n.")
PM_INSN(VSUB,    0x41, "vsub",    VEC, "taaar",   "d[i] = a[i] - b[i].")
PM_INSN(VMUL,    0x42, "vmul",    VEC, "taaar",   "d[i] = a[i] * b[i].")
PM_INSN(VMAX,    0x43, "vmax",    VEC, "taaar",   "d[i] = max(a[i], b[i]) (IEEE maxNum: a NaN loses to a number).")
PM_INSN(VMIN,    0x44, "vmin",    VEC, "taaar",   "d[i] = min(a[i], b[i]).")
PM_INSN(VFMA,    0x45, "vfma",    VEC, "taaaar",  "d[i] = fma(a[i], b[i], c[i]), one rounding.")
PM_INSN(VADDS,   0x46, "vadds",   VEC, "taarr",   "d[i] = a[i] + s, s = fp32 bits in register.")
PM_INSN(VMULS,   0x47, "vmuls",   VEC, "taarr",   "d[i] = a[i] * s.")
PM_INSN(VMAXS,   0x48, "vmaxs",   VEC, "taarr",   "d[i] = max(a[i], s).")
PM_INSN(VBCAST,  0x49, "vbcast",  VEC, "tarr",    "d[i] = s (broadcast a scalar register's fp32 bits), n elements.")
PM_INSN(VMOV,    0x4A, "vmov",    VEC, "taar",    "d[i] = a[i].")
PM_INSN(VCMPGT,  0x4B, "vcmpgt",  VEC, "taaar",   "d[i] = a[i] > b[i] ? 1.0 : 0.0.")
PM_INSN(VSEL,    0x4C, "vsel",    VEC, "taaaar",  "d[i] = c[i] != 0 ? a[i] : b[i]; written vsel d, c, a, b, n.")
PM_INSN(VREDSUM, 0x4D, "vredsum", VEC, "taarr",   "Row sums: d[r] = sum of a[r*n .. r*n+n) for r < rows; written vredsum d, a, n, rows.")
PM_INSN(VREDMAX, 0x4E, "vredmax", VEC, "taarr",   "Row maxima: d[r] = max of a[r*n .. r*n+n).")
PM_INSN(VADDR,   0x4F, "vaddr",   VEC, "taaarr",  "Row broadcast: d[r*n+j] = a[r*n+j] + b[r]; written vaddr d, a, b, n, rows.")
PM_INSN(VSUBR,   0x50, "vsubr",   VEC, "taaarr",  "Row broadcast: d[r*n+j] = a[r*n+j] - b[r].")
PM_INSN(VMULR,   0x51, "vmulr",   VEC, "taaarr",  "Row broadcast: d[r*n+j] = a[r*n+j] * b[r].")
PM_INSN(VCVT,    0x52, "vcvt",    VEC, "ttaar",   "Convert n elements: vcvt.DST.SRC d, a, n; any storage format, blocks included.")

/* ---- LFU array: one LFU per vector lane, a few resident tables ---- */
PM_INSN(LFUCFG,  0x70, "lfu.cfg", LFU, "sf",      "Load a built-in function table into slot s.")
PM_INSN(LFULD,   0x71, "lfu.ld",  LFU, "sr",      "Load a serialized LFU table (PMLF) from SRAM at the register's address into slot s.")
PM_INSN(LFU,     0x72, "lfu",     LFU, "tsaar",   "d[i] = f_s(a[i]) through the table in slot s: lfu.T s, d, a, n.")

/* ---- LFU fabric (0xA0-0xAF): a KAN network mapped edge by edge onto a
 * fabric of LFUs and adders, driven through the LFU unit's queue
 * (docs/fabric.md). The network is a PMFN blob (include/polymorph/sim.h). */
PM_INSN(FABCFG,  0xA0, "fab.cfg", LFU, "r",       "Load a serialized KAN network (PMFN) from SRAM at the register's address into the fabric: one resident table per edge.")
PM_INSN(FABRUN,  0xA1, "fab.run", LFU, "taar",    "Stream n samples through the fabric's network: fab.run.T d, a, n; each sample's inputs (outputs) contiguous, samples one after another.")

/* ---- synchronisation and trace ---- */
PM_INSN(FENCE,   0x80, "fence",     CTRL, "m",    "Stall issue until every unit in the mask is idle.")
PM_INSN(FSET,    0x81, "flag.set",  CTRL, "gi",   "After all earlier work of this engine completes, set chip flag g = imm.")
PM_INSN(FADD,    0x82, "flag.add",  CTRL, "gi",   "After all earlier work of this engine completes, add imm to chip flag g.")
PM_INSN(FWAIT,   0x83, "flag.wait", CTRL, "gi",   "Stall issue until chip flag g >= imm.")
PM_INSN(FWAITR,  0x84, "flag.waitr", CTRL, "gr",  "Stall issue until chip flag g >= the register's value.")
PM_INSN(MARK,    0x85, "mark",      CTRL, "i",    "Trace marker: record an instant event with this id at the current cycle.")

/* ---- tensor unit: systolic array, bf16 x bf16 -> fp32 (docs/tensor.md) ----
 * Operands are packed tiles: A is M x K bf16 row-major in SRAM; B is N x K
 * (one row of K weights per output column, as GGUF and nn.Linear store them)
 * in format W, one encoded tensor (block formats: K a whole number of blocks;
 * NVFP4/IF4 start with their fp32 tensor scale); the accumulator tile is
 * M x N fp32 at a byte address of the engine's accumulator memory. */
PM_INSN(TSHAPE,  0xC0, "tshape",  CTRL,   "rrri", "Set the tensor shape M, N, K (registers) and dataflow (imm: 0 config, 1 os, 2 ws) of later tensor ops.")
PM_INSN(TMM,     0xC1, "tmm",     TENSOR, "taaa", "acc = A x B^T: tmm.W acc, a, b; each fp32 sum starts at +0 and adds the exact products in k order.")
PM_INSN(TMMA,    0xC2, "tmma",    TENSOR, "taaa", "acc += A x B^T: like tmm, but each sum continues from the accumulator's value (k order across calls).")
PM_INSN(TEPI,    0xC3, "tepi",    CTRL,   "rrr",  "Set the epilogue of later tout: bias address (N fp32 in SRAM), scale (fp32 bits), mode (bit0 bias, bit1 scale, bit2 LFU activation, bits 4-6 slot).")
PM_INSN(TOUT,    0xC4, "tout",    TENSOR, "taa",  "Write the M x N accumulator tile through the epilogue: tout.F d, acc; v = acc*scale + bias[n], then f_slot(v), rounded to F.")
/* clang-format on */
