; s_neg: out = -x. Scalar arguments.
.skill s_neg(x: scalar, out: scalar)
.jacobian jac
    load   r0, x, 0
    movi   r1, 0
    sub    r0, r1, r0
    store  out, 0, r0
    ret
jac:                           ; tangent mode: out is bound to a tangent row T; T *= -1
    movi   r1, -1
    mul    r2, out.rows, out.cols   ; P: the tangent row bound to out has P cells
    movi   r3, 0
jloop:
    lt     r4, r3, r2
    jz     r4, jdone
    add    r5, out, r3
    load   r6, r5, 0
    mul    r6, r6, r1
    store  r5, 0, r6
    addi   r3, r3, 1
    jmp    jloop
jdone:
    ret
