def adabelief(w, g, m, s, lr, step, beta1=0.9, beta2=0.999, eps=1e-16, wd=0.0):
    "AdaBelief: the second moment tracks (g - m)^2, the belief in the gradient; eps inside and out."
    m = interp(m, g, 1 - beta1)
    s = beta2 * s + (1 - beta2) * square(g - m) + eps
    denom = sqrt(s) / sqrt(1 - beta2 ** step) + eps
    update = lr / (1 - beta1 ** step) * m / denom + lr * wd * w
    return update, m, s
