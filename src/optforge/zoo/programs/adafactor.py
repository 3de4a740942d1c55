def adafactor(w, g, r, c, lr, step, decay=-0.8, eps1=1e-30, eps2=1e-3, d=1.0, wd=0.0):
    "Adafactor: factored second moment r c / mean(r), relative step size, update clipping at d."
    t = step ** decay
    r = interp(r, row_mean(g * g), t)
    c = interp(c, col_mean(g * g), t)
    v = r * c / maximum(mean(r), eps1)
    u = g * rsqrt(maximum(v, eps1 * eps1))
    alpha = maximum(eps2, rms(w)) * minimum(lr, rsqrt(step))
    update = alpha / maximum(1, rms(u) / d) * u + lr * wd * w
    return update, r, c
