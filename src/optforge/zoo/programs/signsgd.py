def signsgd(w, g, lr, wd=0.0):
    "signSGD: step along the sign of the gradient, decoupled weight decay."
    update = lr * (sign(g) + wd * w)
    return update
