; linear: out = W x + b, with the weights slot bound to the augmented matrix
; [W | b] of shape (m, n + 1) (row i is W[i, :] followed by b[i]).
; Jacobian entry (MODE = 1): out is bound to J of shape (m, P), P = m * (n + 1), and
; receives d out / d weights, the weights flattened row-major:
; J[i, i * (n + 1) + j] = x[j], J[i, i * (n + 1) + n] = 1, every other entry 0.
; Faults (INVALID_INSTRUCTION) if weights.cols != n + 1 or out is too small.
.skill linear(x: vector, out: vector)
.weights
.jacobian jac
    mul    r0, x.rows, x.cols      ; n
    addi   r1, r0, 1               ; n + 1
    eq     r2, r1, weights.cols
    jz     r2, trap
    mul    r2, out.rows, out.cols
    lt     r2, r2, weights.rows
    jnz    r2, trap
    movi   r5, 0                   ; i
rows:
    lt     r2, r5, weights.rows
    jz     r2, done
    mul    r6, r5, r1
    add    r6, weights, r6         ; &W[i, 0]
    add    r3, r6, r0
    load   r7, r3, 0               ; acc = b[i]
    movi   r4, 0                   ; j
cols:
    lt     r2, r4, r0
    jz     r2, emit
    add    r3, r6, r4
    load   r2, r3, 0
    add    r3, x, r4
    load   r3, r3, 0
    mul    r2, r2, r3
    add    r7, r7, r2
    addi   r4, r4, 1
    jmp    cols
emit:
    add    r3, out, r5
    store  r3, 0, r7
    addi   r5, r5, 1
    jmp    rows
done:
    ret
jac:
    mul    r0, x.rows, x.cols      ; n
    addi   r1, r0, 1               ; n + 1
    eq     r2, r1, weights.cols
    jz     r2, trap
    mul    r6, weights.rows, r1    ; P = m * (n + 1)
    mul    r7, r6, weights.rows    ; m * P cells
    mul    r2, out.rows, out.cols
    lt     r2, r2, r7
    jnz    r2, trap
    movi   r4, 0
    movi   r3, 0
zero:
    lt     r2, r4, r7
    jz     r2, fill
    add    r5, out, r4
    store  r5, 0, r3
    addi   r4, r4, 1
    jmp    zero
fill:
    movi   r5, 0                   ; i
jrows:
    lt     r2, r5, weights.rows
    jz     r2, jdone
    mul    r7, r5, r6              ; i * P
    mul    r3, r5, r1              ; i * (n + 1)
    add    r7, r7, r3
    add    r7, out, r7             ; &J[i, i * (n + 1)]
    movi   r4, 0                   ; j
jcols:
    lt     r2, r4, r0
    jz     r2, jbias
    add    r3, x, r4
    load   r2, r3, 0
    add    r3, r7, r4
    store  r3, 0, r2
    addi   r4, r4, 1
    jmp    jcols
jbias:
    add    r3, r7, r0
    movi   r2, 1
    store  r3, 0, r2
    addi   r5, r5, 1
    jmp    jrows
jdone:
    ret
trap:
    .word  0 0 0 0
