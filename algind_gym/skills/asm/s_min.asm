; s_min: out = min(a, b). Scalar arguments; reads both operands before writing, so out may alias a or b.
.skill s_min(a: scalar, b: scalar, out: scalar)
.jacobian jac
    load   r0, a, 0
    load   r1, b, 0
    min    r0, r0, r1
    store  out, 0, r0
    ret
jac:                           ; tangent mode: out is bound to a tangent row T; T *= d out / d a
    load   r0, a, 0
    load   r2, b, 0
    le     r1, r0, r2     ; d out / d a = [a <= b]
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
