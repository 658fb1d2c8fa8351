; gather: out[i] = x[idx[i]] for i < size(idx).
; Faults (INVALID_INSTRUCTION) if out is smaller than idx or an index is outside x;
; a fractional index is an ADDRESS fault of the load.
.skill gather(x: vector, idx: vector, out: vector)
    mul    r0, idx.rows, idx.cols  ; n
    mul    r1, out.rows, out.cols
    lt     r2, r1, r0
    jnz    r2, trap
    mul    r1, x.rows, x.cols      ; m = size(x)
    movi   r5, 0                   ; i
loop:
    lt     r2, r5, r0
    jz     r2, done
    add    r3, idx, r5
    load   r4, r3, 0               ; j = idx[i]
    movi   r6, 0
    lt     r2, r4, r6
    jnz    r2, trap                ; j < 0
    lt     r2, r4, r1
    jz     r2, trap                ; j >= m
    add    r3, x, r4
    load   r4, r3, 0
    add    r3, out, r5
    store  r3, 0, r4
    addi   r5, r5, 1
    jmp    loop
done:
    ret
trap:
    .word  0 0 0 0
