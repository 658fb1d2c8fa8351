; s_le: out = 1 if a <= b else 0. Scalar arguments; reads both operands before writing, so out may alias a or b.
.skill s_le(a: scalar, b: scalar, out: scalar)
    load   r0, a, 0
    load   r1, b, 0
    le     r0, r0, r1
    store  out, 0, r0
    ret
