; Dot product through pointer cells: out = sum_i xs[i] * ys[i].
; px and py hold the addresses of xs and ys; LOAD reads through them with an offset.
.data xs 1 2 3 4
.data ys 5 6 7 8
.data n 4
.data px xs
.data py ys
.zero out 1

    movi   r0, 0          ; accumulator
    movi   r1, 0          ; i
loop:
    lt     r2, r1, n      ; r2 = i < n
    jz     r2, done
    add    r3, px, r1     ; r3 = &xs[i]
    load   r4, r3, 0      ; r4 = xs[i]
    add    r3, py, r1
    load   r5, r3, 0      ; r5 = ys[i]
    mul    r4, r4, r5
    add    r0, r0, r4
    addi   r1, r1, 1
    jmp    loop
done:
    mov    out, r0
    halt
