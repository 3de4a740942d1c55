def mars_adamw(w, g, m, v, g_prev, lr, step, beta1=0.95, beta2=0.99, gamma=0.025, eps=1e-8,
               wd=0.0):
    "MARS-AdamW: AdamW on the variance-reduced gradient c = g + gamma beta1/(1-beta1) (g - g_prev)."
    c = (g - g_prev) * (gamma * beta1 / (1 - beta1)) + g
    c = c / maximum(norm(c), 1)
    m = interp(m, c, 1 - beta1)
    v = beta2 * v + (1 - beta2) * c * c
    denom = (sqrt(v + 1e-15) + eps) / sqrt(1 - beta2 ** step) * (1 - beta1 ** step)
    update = lr * (m / denom + wd * w)
    return update, m, v, g
