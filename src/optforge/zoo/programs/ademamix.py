def ademamix(w, g, m1, v, m2, lr, step, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0,
             t_warmup=0.0, eps=1e-8, wd=0.0):
    "AdEMAMix: Adam plus alpha times a slow EMA (beta3); alpha, beta3 warmed up over t_warmup steps."
    on = gt(t_warmup, 0)
    frac = step / t_warmup
    lb1 = log(beta1)
    lb3 = log(beta3)
    alpha_t = where(on, minimum(step * alpha / t_warmup, alpha), alpha)
    beta3_t = where(on, minimum(exp(lb1 * lb3 / ((1 - frac) * lb3 + frac * lb1)), beta3), beta3)
    m1 = interp(m1, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    m2 = interp(m2, g, 1 - beta3_t)
    denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
    update = lr * ((m1 / (1 - beta1 ** step) + alpha_t * m2) / denom + wd * w)
    return update, m1, v, m2
