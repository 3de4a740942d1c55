def amsgrad(w, g, m, v, vmax, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    "AMSGrad: Adam whose denominator uses the running maximum of the second moment."
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    vmax = maximum(vmax, v)
    denom = sqrt(vmax) / sqrt(1 - beta2 ** step) + eps
    update = lr / (1 - beta1 ** step) * m / denom
    return update, m, v, vmax
