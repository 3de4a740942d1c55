def adamod(w, g, m, v, s, lr, step, beta1=0.9, beta2=0.999, beta3=0.9999, eps=1e-8, wd=0.0):
    "AdaMod: Adam's per-coordinate step size capped by its own exponential moving average."
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    eta = lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step) / (sqrt(v) + eps)
    s = interp(s, eta, 1 - beta3)
    update = minimum(eta, s) * m
    return update, m, v, s
