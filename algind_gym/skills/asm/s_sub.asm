; s_sub: out = a - b. Scalar arguments; reads both operands before writing, so out may alias a or b.
.skill s_sub(a: scalar, b: scalar, out: scalar)
.jacobian jac
    load   r0, a, 0
    load   r1, b, 0
    sub    r0, r0, r1
    store  out, 0, r0
    ret
jac:                           ; tangent mode: out is bound to a tangent row T; T *= d out / d a
    ret                        ; d out / d a = 1: T is unchanged
