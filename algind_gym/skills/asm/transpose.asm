; transpose: out[j, i] = M[i, j]; out is written as a (cols x rows) row-major matrix.
; Faults (INVALID_INSTRUCTION) if out has fewer cells than M.
.skill transpose(M: matrix, out: matrix)
    mul    r0, M.rows, M.cols
    mul    r1, out.rows, out.cols
    lt     r2, r1, r0
    jnz    r2, trap
    movi   r5, 0                   ; i (row of M)
rows:
    lt     r2, r5, M.rows
    jz     r2, done
    movi   r6, 0                   ; j (column of M)
cols:
    lt     r2, r6, M.cols
    jz     r2, next
    mul    r3, r5, M.cols
    add    r3, r3, r6
    add    r3, M, r3
    load   r4, r3, 0               ; M[i, j]
    mul    r3, r6, M.rows
    add    r3, r3, r5
    add    r3, out, r3
    store  r3, 0, r4               ; out[j, i]
    addi   r6, r6, 1
    jmp    cols
next:
    addi   r5, r5, 1
    jmp    rows
done:
    ret
trap:
    .word  0 0 0 0
