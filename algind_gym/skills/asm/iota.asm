; iota: out[i] = i for i < size(out).
.skill iota(out: vector)
    mul    r0, out.rows, out.cols  ; n
    movi   r1, 0                   ; i
loop:
    lt     r2, r1, r0
    jz     r2, done
    add    r3, out, r1
    store  r3, 0, r1
    addi   r1, r1, 1
    jmp    loop
done:
    ret
