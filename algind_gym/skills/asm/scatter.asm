; scatter: out[idx[i]] = x[i] for i < size(x); later writes win.
; Faults (INVALID_INSTRUCTION) if idx is smaller than x or an index is outside out.
.skill scatter(x: vector, idx: vector, out: vector)
    mul    r0, x.rows, x.cols      ; n
    mul    r1, idx.rows, idx.cols
    lt     r2, r1, r0
    jnz    r2, trap
    mul    r1, out.rows, out.cols  ; m = size(out)
    movi   r5, 0                   ; i
loop:
    lt     r2, r5, r0
    jz     r2, done
    add    r3, idx, r5
    load   r4, r3, 0               ; j = idx[i]
    movi   r6, 0
    lt     r2, r4, r6
    jnz    r2, trap
    lt     r2, r4, r1
    jz     r2, trap
    add    r3, x, r5
    load   r6, r3, 0
    add    r3, out, r4
    store  r3, 0, r6
    addi   r5, r5, 1
    jmp    loop
done:
    ret
trap:
    .word  0 0 0 0
