def sgd(w, g, lr, wd=0.0):
    "Stochastic gradient descent with L2 weight decay (torch.optim.SGD)."
    update = lr * (g + wd * w)
    return update
