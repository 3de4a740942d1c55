# space: lr = ["log", 4.64e-05, 1]
def found(g, m, v, lr, step, s1, beta1=0.7596, beta2=0.999, eps=1.136e-08, wd=0.009148):
    m = interp(m, g, 1 - beta1)
    v = interp(v, g * g, 1 - beta2)
    v_hat = v / step
    s1 = interp(s1, lr, 0.5)
    update = s1 * (m / (sqrt(v_hat) + eps) + wd * v_hat)
    return update, m, v, s1
