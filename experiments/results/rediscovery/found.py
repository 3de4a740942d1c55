# space: lr = ["log", 0.000215, 10]
def found(g, lr, s1, s2):
    s1 = interp(s1, lr, 0.005631)
    s2 = interp(s2, g, 0.2111)
    s3 = matmul(s1, 0.54)
    t1 = sign(s2)
    update = s3 * t1
    return update, s1, s2
