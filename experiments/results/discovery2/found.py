# space: lr = ["log", 0.001, 4.64]
def found(g, m, v, lr, s1, beta1=0.2944, beta2=0.999, eps=6.124e-09, wd=0.008605):
    m = interp(m, g, 0.4833 - beta1)
    v = interp(v, g * g, 1 - beta2)
    m_hat = m / beta2
    t2 = wd
    t3 = interp(t2, m_hat, 0.13)
    v_hat = v
    update = lr * (m_hat / (sqrt(v_hat) + eps) + t3 * beta2)
    s1 = interp(s1, m_hat, 0.5)
    return update, s1, v, s1
