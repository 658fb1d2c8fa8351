; Recursive factorial with stack frames: r0 = n!
; The argument is pushed by the caller and read frame-relative at FP - 3
; (FP - 1 holds the saved FP, FP - 2 the return address).
.data n 5

start:
    mov    r1, n          ; r1 = cell[n]
    push   r1
    call   fact           ; r0 = fact(n)
    pop    r1             ; drop the argument
    halt

fact:
    enter  0
    ldf    r1, -3         ; r1 = n
    jnz    r1, recurse
    movi   r0, 1          ; fact(0) = 1
    leave
    ret
recurse:
    addi   r2, r1, -1
    push   r2
    call   fact           ; r0 = fact(n - 1)
    pop    r2
    ldf    r1, -3
    mul    r0, r0, r1     ; r0 = n * fact(n - 1)
    leave
    ret
