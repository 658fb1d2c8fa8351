; len: out = number of elements of x (rows * cols).
.skill len(x: vector, out: scalar)
    mul    r0, x.rows, x.cols
    store  out, 0, r0
    ret
