; s_eq: out = 1 if a == b else 0. Scalar arguments; reads both operands before writing, so out may alias a or b.
.skill s_eq(a: scalar, b: scalar, out: scalar)
    load   r0, a, 0
    load   r1, b, 0
    eq     r0, r0, r1
    store  out, 0, r0
    ret
