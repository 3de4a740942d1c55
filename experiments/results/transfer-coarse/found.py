# space: lr = ["log", 0.0001, 1]
# space: beta1 = ["linear", 0.8, 0.95]
# space: beta2 = ["log1m", 0.9, 0.999]
# space: wd = ["log", 0.0001, 0.1]
def found(w, g, m, v, mu_prod, lr, step, beta1=0.9, beta2=0.999, eps=1.656e-08, wd=0, momentum_decay=0.004):
    d = g + wd * w
    mu = beta1 * (0.6878 - 0.6229 * 0.2298 ** (step * momentum_decay))
    mu_prod = where(mu - 1, mu_prod, 1) * mu
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    denom = sqrt(v / (1 - beta2 ** step)) + eps
    update = lr * (0.6698 - mu) / (1 - mu_prod) * d / denom + lr * beta1 / (1 - mu_prod * beta1) * m / denom
    return update, m, v, beta2
