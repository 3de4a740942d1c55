def adabound(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, final_lr=0.1, gamma=1e-3, eps=1e-8,
             wd=0.0):
    "AdaBound: Adam's per-coordinate step size clipped into bounds that close on final_lr."
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    step_size = lr * sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    lower = final_lr * (1 - 1 / (gamma * step + 1))
    upper = final_lr * (1 + 1 / (gamma * step))
    update = minimum(maximum(step_size / (sqrt(v + 1e-15) + eps), lower), upper) * m
    return update, m, v
