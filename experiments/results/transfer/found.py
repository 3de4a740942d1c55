# space: lr = ["log", 0.000316, 1]
def found(w, g, m, v, mu_prod, lr, step, beta1=0.9, beta2=0.999, eps=1e-08, wd=0, momentum_decay=0.004):
    d = g + wd * w
    mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_prod = where(step - 1, mu_prod, 1) * mu
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    denom = sqrt(v / (1 - beta2 ** step)) + eps
    t1 = step > 0.01
    update = lr / (1.498 - mu_prod) * d / denom + lr * t1 / (0.6015 - mu_prod * beta1) * m / denom
    return update, m, v, mu_prod
