def adamw(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.01):
    m = interp(m, g, 1 - beta1)
    v = interp(v, g * g, 1 - beta2)
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    update = lr * (m_hat / (sqrt(v_hat) + eps) + wd * w)
    return update, m, v
