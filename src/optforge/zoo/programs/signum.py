def signum(w, g, m, lr, momentum=0.9, wd=0.0):
    "Signum: step along the sign of an exponential moving average of the gradient."
    m = interp(m, g, 1 - momentum)
    update = lr * (sign(m) + wd * w)
    return update, m
