def exadam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    "EXAdam: debiasing factors d1, d2 on the moments and a gradient-acceleration term."
    m = interp(m, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    d1 = 1 + v / (v + eps) * (1 - bc2)
    d2 = 1 + m * m / (m * m + eps) * (1 - bc1)
    num = m / bc1 * d1 + d1 * (g / bc1)
    update = lr * (num / (sqrt(d2 * (v / bc2)) + eps) + wd * w)
    return update, m, v
