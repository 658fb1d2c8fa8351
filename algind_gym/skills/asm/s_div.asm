; s_div: out = a / b (DIVISION_BY_ZERO fault if b == 0). Scalar arguments; reads both operands before writing, so out may alias a or b.
.skill s_div(a: scalar, b: scalar, out: scalar)
    load   r0, a, 0
    load   r1, b, 0
    div    r0, r0, r1
    store  out, 0, r0
    ret
