; copy: out[i] = x[i] for i < size(x). Vectors; a matrix binds as its row-major flattening.
; Faults (INVALID_INSTRUCTION, via the trap) if out is smaller than x.
.skill copy(x: vector, out: vector)
    mul    r0, x.rows, x.cols      ; n
    mul    r1, out.rows, out.cols
    lt     r2, r1, r0
    jnz    r2, trap
    movi   r1, 0                   ; i
loop:
    lt     r2, r1, r0
    jz     r2, done
    add    r3, x, r1
    load   r4, r3, 0
    add    r3, out, r1
    store  r3, 0, r4
    addi   r1, r1, 1
    jmp    loop
done:
    ret
trap:
    .word  0 0 0 0                 ; opcode 0: INVALID_INSTRUCTION, the library's "check failed" fault
