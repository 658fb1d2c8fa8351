; A one-instruction (SUBLEQ) program, as in the looped-transformer literature:
; b = a + b using a zero cell z, then halt.  subleq a, b, c: b -= a; if b <= 0 goto c.
.data a 7
.data b 35
.data z 0

    subleq a, z, next1    ; z = -a
next1:
    subleq z, b, next2    ; b = b - (-a) = a + b
next2:
    subleq z, z, end      ; z = 0, always jumps
end:
    halt
