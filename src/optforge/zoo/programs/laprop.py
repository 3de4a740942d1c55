def laprop(w, g, m, v, lr_avg, lr, step, beta1=0.9, beta2=0.999, eps=1e-15, wd=0.0):
    "LaProp: momentum of the RMS-normalised gradient; decoupled weight decay after the step."
    v = beta2 * v + (1 - beta2) * g * g
    lr_avg = beta1 * lr_avg + (1 - beta1) * lr
    denom = (sqrt(v + 1e-15) + eps) / sqrt(1 - beta2 ** step)
    m = beta1 * m + (1 - beta1) * lr * g / denom
    u = m / (lr_avg / lr)
    update = u + lr * wd * (w - u)
    return update, m, v, lr_avg
