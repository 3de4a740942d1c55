def adam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    "Adam with L2 weight decay (folded into the gradient) and eps outside the square root."
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
    update = lr / (1 - beta1 ** step) * m / denom
    return update, m, v
