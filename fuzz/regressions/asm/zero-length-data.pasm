.dram
x: .zero 0
.byte
