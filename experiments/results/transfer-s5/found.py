# space: lr = ["log", 0.0001, 1]
# space: beta1 = ["linear", 0.8, 0.95]
# space: beta2 = ["log1m", 0.9, 0.999]
# space: wd = ["log", 0.0001, 0.1]
def found(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=8.754e-09, wd=0, momentum_decay=0.001336):
    t1 = std(w)
    d = g + wd * w
    mu = beta1 * (1 - 0.5 * 4.324 ** (step * momentum_decay))
    mu_next = beta1 * beta2
    mu_prod = where(step - 1.174, t1, 1.615) * mu
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    denom = sqrt(v / (1 - beta2 ** step)) + eps
    update = lr * (1 - mu) / (1 - mu_prod) * d / denom + lr * mu_next / (1 - mu_prod * mu_next) * m / denom
    return update, m, v
