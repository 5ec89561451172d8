print("creditd")
