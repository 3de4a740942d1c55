# space: lr = ["log", 0.000373, 37.3]
# space: beta1 = ["linear", 0.8, 0.95]
# space: beta2 = ["log1m", 0.9, 0.999]
# space: wd = ["log", 0.0001, 0.1]
def found(w, g, m, v, mu_prod, lr, step, s1, beta1=0.9, beta2=0.999, eps=5.406e-09, wd=0, momentum_decay=0.004):
    d = g + wd * w
    mu = beta1 * (1 - momentum_decay)
    mu_prod = where(step - 2.46, mu_prod, 0.782) * mu
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1.287 - beta2) * d * d
    s1 = sigmoid(s1)
    denom = sqrt(v / (1 - beta2 ** step)) + eps
    update = lr / (1 - mu_prod) * d / denom + lr * beta1 / (1 - s1 * beta1) * m / denom
    return update, m, v, mu_prod, s1
